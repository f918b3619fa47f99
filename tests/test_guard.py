"""alpha.guard through the estimate_alpha and merge stages (in process)."""

import pytest
import torch

from alphavil import layout, pipeline
from alphavil.artifacts import load_checkpoint, load_tensors, read_json, write_json
from alphavil.config import load_params
from alphavil.context import RunContext
from alphavil.core import merge
from alphavil.training import evaluate
from conftest import fit_first_epoch_alpha


def _epoch0(workdir, guard):
    workdir(alpha={"guard": guard})
    fit_first_epoch_alpha()
    return read_json(layout.alpha_path(0, "ep0"))


def test_guard_measures_the_dev_loss_evaluate_reports_and_merge_follows_it(workdir):
    record = _epoch0(workdir, guard=True)
    pipeline.merge(0, "ep0", {})
    ctx = RunContext.build(load_params("params.yaml"), seed=0)
    dev = ctx.split("dev", ctx.target)
    theta, _ = load_checkpoint(layout.checkpoint_dir("alphavil", 0, "base"))
    deltas = {t: load_tensors(layout.delta_path(0, "ep0", t))[0] for t in ("left", "right")}
    fitted = merge(theta, ((record["alpha"][t], d) for t, d in deltas.items()))
    g = record["guard"]
    assert g["dev_loss_theta"] == pytest.approx(
        evaluate(ctx.model, dev, ctx.target, params=theta)["loss"], rel=1e-5)
    assert g["dev_loss_fitted"] == pytest.approx(
        evaluate(ctx.model, dev, ctx.target, params=fitted)["loss"], rel=1e-5)
    assert g["accepted"] == (g["dev_loss_fitted"] <= g["dev_loss_theta"])
    written, state = load_checkpoint(layout.checkpoint_dir("alphavil", 0, "ep0"))
    expected = fitted if g["accepted"] else theta
    assert all(torch.equal(written[n], expected[n]) for n in theta)
    assert state.get("merge_rejected", False) is not g["accepted"]


def test_merge_stage_keeps_theta_and_weights_when_the_guard_rejects(workdir):
    record = _epoch0(workdir, guard=True)
    record["guard"]["accepted"] = False  # as if the fitted α had made the target worse
    write_json(layout.alpha_path(0, "ep0"), record)
    pipeline.merge(0, "ep0", {})
    base, _ = load_checkpoint(layout.checkpoint_dir("alphavil", 0, "base"))
    kept, state = load_checkpoint(layout.checkpoint_dir("alphavil", 0, "ep0"))
    assert all(torch.equal(kept[n], base[n]) for n in base)
    assert state["weights"] == {"left": 1.0, "right": 1.0}
    assert state["merge_rejected"] is True and state["alpha"] == record["alpha"]


def test_without_the_guard_the_alpha_file_has_no_guard_entry(workdir):
    assert "guard" not in _epoch0(workdir, guard=False)


def test_evaluate_reports_the_refused_merges(workdir):
    import json

    from alphavil.config import load_params as load

    record = _epoch0(workdir, guard=True)
    record["guard"]["accepted"] = False
    write_json(layout.alpha_path(0, "ep0"), record)
    pipeline.merge(0, "ep0", {})
    for task in ("left", "right"):
        pipeline.finetune(0, "ep1", task, {})
    pipeline.estimate_alpha(0, "ep1", {})
    pipeline.merge(0, "ep1", {})
    for method in load("params.yaml").methods[1:]:
        pipeline.train_method(method, 0)
    pipeline.evaluate()
    entry = json.loads((layout.METRICS / "summary.json").read_text())["methods"]["alphavil"]
    accepted_ep1 = read_json(layout.alpha_path(0, "ep1"))["guard"]["accepted"]
    expected = ["s0 ep0"] + ([] if accepted_ep1 else ["s0 ep1"])
    assert entry["merges_rejected"] == len(expected)
    assert entry["merges_rejected_at"] == expected
    md = (layout.METRICS / "summary.md").read_text()
    assert f"`alpha.guard` refused {len(expected)} of 2 merges" in md
