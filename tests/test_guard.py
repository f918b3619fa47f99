"""alpha.guard through the estimate_alpha and merge stages (in process)."""

import pytest
import torch

from alphavil import pipeline
from alphavil.store import layout
from alphavil.store.artifacts import load_checkpoint, load_tensors, read_json, write_json
from alphavil.config import load_params
from alphavil.training.context import RunContext
from alphavil.training.loop import evaluate
from testkit.artifacts import fit_first_epoch_alpha


def _epoch0(workdir, guard, **alpha):
    workdir(alpha={"guard": guard, **alpha},
            alphavil={"weight_rule": "additive", "weight_floor": 0.0})
    fit_first_epoch_alpha()
    return read_json(layout.alpha_path(0, "ep0"))


def _redo_guard(epoch, prev):
    """The guard's comparison redone from the files, independently of the stages: the
    target's dev loss (alphavil.training.loop.evaluate) of θ and of θ + Σ_k α_k δ_k, summed by
    hand in float64. α, the merge's input, is read from the α file."""
    ctx = RunContext.build(load_params("params.yaml"), seed=0)
    dev = ctx.split("dev", ctx.target)
    theta, _ = load_checkpoint(layout.checkpoint_dir("alphavil", 0, prev))
    alpha = read_json(layout.alpha_path(0, epoch))["alpha"]
    fitted = {n: v.double() for n, v in theta.items()}
    for task, a in alpha.items():
        for n, d in load_tensors(layout.delta_path(0, epoch, task))[0].items():
            fitted[n] += a * d.double()
    fitted = {n: v.float() for n, v in fitted.items()}
    loss = {k: evaluate(ctx.model, dev, ctx.target, params=p)["loss"]
            for k, p in (("theta", theta), ("fitted", fitted))}
    return theta, fitted, alpha, loss


@pytest.mark.parametrize("alpha, accepted", [
    # full-batch α steps from α = 0 (θ itself) go down the target's dev loss: better
    ({"init": 0.0, "steps": 3, "batch_size": 64}, True),
    ({"init": 30.0, "steps": 0}, False),  # θ + 30·Σδ: far worse than θ
])
def test_guard_measures_the_dev_loss_evaluate_reports_and_merge_follows_it(workdir, alpha,
                                                                          accepted):
    record = _epoch0(workdir, guard=True, **alpha)
    pipeline.merge(0, "ep0", {})
    theta, fitted, alphas, loss = _redo_guard("ep0", "base")
    assert (loss["fitted"] <= loss["theta"]) is accepted  # the case this parameter tests
    g = record["guard"]
    assert g["dev_loss_theta"] == pytest.approx(loss["theta"], rel=1e-5)
    assert g["dev_loss_fitted"] == pytest.approx(loss["fitted"], rel=1e-5)
    assert g["accepted"] is accepted
    written, state = load_checkpoint(layout.checkpoint_dir("alphavil", 0, "ep0"))
    expected = fitted if accepted else theta
    for n in theta:
        torch.testing.assert_close(written[n], expected[n], rtol=1e-6, atol=0)
    assert state.get("merge_rejected", False) is not accepted
    # additive rule w ← max(0, w + α − 1) (weight_floor 0) after a merge; w stays 1 after
    # a refused one
    assert state["weights"] == pytest.approx(
        {t: max(0.0, 1.0 + a - 1.0) if accepted else 1.0 for t, a in alphas.items()})


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
    _, _, _, loss = _redo_guard("ep1", "ep0")  # ep0 was refused: ep0's θ is θ_0
    expected = ["s0 ep0"] + ([] if loss["fitted"] <= loss["theta"] else ["s0 ep1"])
    assert entry["merges_rejected"] == len(expected)
    assert entry["merges_rejected_at"] == expected
    md = (layout.METRICS / "summary.md").read_text()
    assert f"`alpha.guard` refused {len(expected)} of 2 merges" in md
