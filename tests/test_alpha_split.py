"""alpha.split: α fitted on a fixed part of the target's dev split (dev_half), the other
part selecting; the default (dev) fits and selects on the whole split as before."""


import pytest
import torch
import yaml

from alphavil.config import ParamsError, validate
from alphavil.data.prepared import _load_split_file, dev_parts
from alphavil.store.artifacts import load_tensors, read_json, save_tensors
from testkit.params import tiny_raw


def test_dev_parts_are_a_fixed_disjoint_cover():
    parts = dev_parts(49)
    fit, sel = parts["fit"].tolist(), parts["select"].tolist()
    assert len(fit) == 25 and len(sel) == 24
    assert sorted(fit + sel) == list(range(49)) and fit == sorted(fit)
    assert dev_parts(49)["fit"].tolist() == fit  # the same cut every time (paired runs)
    assert fit != list(range(25))  # a random cut, not the split's first half


def test_a_bad_value_is_one_line_naming_the_key():
    raw = tiny_raw(alpha={"split": "half"})
    with pytest.raises(ParamsError) as err:
        validate(raw)
    assert "alpha.split" in str(err.value) and "'dev_half'" in str(err.value)
    assert validate(tiny_raw()).alpha.split == "dev"


def _ctx(folder, monkeypatch, split):
    from alphavil import pipeline
    from alphavil.training.context import RunContext

    raw = tiny_raw(alpha={"split": split})
    folder.mkdir()
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(folder)
    _load_split_file.cache_clear()
    pipeline.prepare("params.yaml")
    return raw, RunContext.build(validate(raw), 0)


def test_the_training_and_selection_uses_read_their_part(tmp_path, monkeypatch):
    _, ctx = _ctx(tmp_path / "half", monkeypatch, "dev_half")
    dev = ctx.split("dev", "left")
    parts = dev_parts(len(dev))
    for use in ("fit", "select"):
        got = ctx.target_dev(use)
        assert torch.equal(got.labels, dev.labels[parts[use]])
        assert torch.equal(got.inputs["images"], dev.inputs["images"][parts[use]])
    _, ctx = _ctx(tmp_path / "whole", monkeypatch, "dev")
    whole = ctx.split("dev", "left")
    # the default hands out the very split object every use read before alpha.split
    assert ctx.target_dev("fit") is whole and ctx.target_dev("select") is whole
    _load_split_file.cache_clear()


def test_dev_half_refuses_a_dev_split_it_cannot_cut(tmp_path, monkeypatch):
    _, ctx = _ctx(tmp_path / "one", monkeypatch, "dev_half")
    ctx._cache[("dev", "left")] = ctx.split("dev", "left").subset(torch.tensor([0]))
    with pytest.raises(ParamsError, match=r"^alpha\.split: expected 'dev' .* 1 example"):
        ctx.target_dev("fit")
    _load_split_file.cache_clear()


def _alpha_after_changing(folder, monkeypatch, split, part):
    """α of seed 0, epoch ep0, fitted on prepared data, then again after one target dev
    label in `part` of the dev cut got another class."""
    from alphavil import pipeline

    raw, _ = _ctx(folder, monkeypatch, split)
    raw["epochs"] = raw["epochs"][:1]
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    pipeline.train_base(0, "params.yaml")
    for task in raw["tasks"]:
        pipeline.finetune(0, "ep0", task, {}, "params.yaml")
    pipeline.estimate_alpha(0, "ep0", {}, "params.yaml")
    before = read_json("alphas/s0/ep0.json")
    path = folder / "data/prepared/dev.safetensors"
    tensors, meta = load_tensors(path)
    labels = tensors["label.left"].clone()
    i = int(dev_parts(len(labels))[part][0])
    labels[i] = (labels[i] + 5) % 10
    save_tensors(path, {**tensors, "label.left": labels}, meta)
    _load_split_file.cache_clear()
    pipeline.estimate_alpha(0, "ep0", {}, "params.yaml")
    after = read_json("alphas/s0/ep0.json")
    _load_split_file.cache_clear()
    return before, after


@pytest.mark.parametrize("split, part, moves", [
    ("dev_half", "select", False),  # the α fit never sees the selection part
    ("dev_half", "fit", True),      # ... and does see its own
    ("dev", "select", True),        # the default fits on every dev example
])
def test_alpha_sees_only_its_part_of_dev(tmp_path, monkeypatch, split, part, moves):
    before, after = _alpha_after_changing(tmp_path / "run", monkeypatch, split, part)
    assert (before != after) == moves


def _records(params, dev_by_epoch, select_by_epoch):
    rows = []
    weights = {t: 1.0 for t in params.tasks}
    for m in params.methods:
        for i, (ep, n) in enumerate([("base", 0)] + [(e.id, e.n) for e in params.epochs]):
            r = {"method": m, "seed": 0, "epoch": ep, "n": n, "weights": weights,
                 "alpha": {t: 1.0 for t in params.tasks},
                 "dev": {"loss": 1.0, "acc": dev_by_epoch[i]},
                 "test": {"loss": 1.0, "acc": 0.1 * (i + 1)}}
            if select_by_epoch is not None:
                r["dev_fit"] = r["dev"]
                r["dev_select"] = {"loss": 1.0, "acc": select_by_epoch[i]}
            rows.append(r)
    return rows


def test_best_on_dev_is_chosen_on_the_selection_part_under_dev_half():
    from alphavil.report import summarise

    params = validate(tiny_raw(seeds=[0], baselines=["uniform"]))
    dev, select = [0.0, 0.9, 0.5], [0.0, 0.2, 0.6]  # whole dev picks ep0, the part ep1
    plain = summarise(params, _records(params, dev, None))
    half = summarise(params, _records(params, dev, select))
    for m in ("alphavil", "uniform"):
        assert plain["methods"][m]["best_dev"]["test"] == pytest.approx(0.2)
        assert "dev_select" not in plain["methods"][m]
        assert half["methods"][m]["best_dev"]["test"] == pytest.approx(0.3)
        # `dev` stays the whole split's (comparable across alpha.split); the part beside it
        assert half["methods"][m]["dev"] == plain["methods"][m]["dev"] == 0.5
        assert half["methods"][m]["dev_select"] == 0.6
        assert half["methods"][m]["best_dev"]["dev_select"] == 0.6


def test_evaluate_records_name_both_parts_and_keep_the_whole_dev(tmp_path, monkeypatch):
    from alphavil.pipeline import dev_records
    from alphavil.training.loop import evaluate

    _, ctx = _ctx(tmp_path / "half", monkeypatch, "dev_half")
    dev = ctx.split("dev", "left")
    got = dev_records(ctx, dev)
    assert got["dev"] == evaluate(ctx.model, dev, "left")
    for part in ("fit", "select"):
        assert got[f"dev_{part}"]["acc"] == pytest.approx(
            evaluate(ctx.model, ctx.target_dev(part), "left")["acc"])
        assert got[f"dev_{part}"]["loss"] == pytest.approx(
            evaluate(ctx.model, ctx.target_dev(part), "left")["loss"], rel=1e-5)
    _, ctx = _ctx(tmp_path / "whole", monkeypatch, "dev")
    assert dev_records(ctx, ctx.split("dev", "left")).keys() == {"dev"}
    _load_split_file.cache_clear()


def test_lr_grid_selects_on_the_selection_part():
    from alphavil.workflow import lrgrid

    def rec(lr, dev, sel):
        entry = {"dev": dev, **({"dev_select": sel} if sel is not None else {})}
        return {"name": f"e{lr}", "params": {"seeds": [0], "train": {"lr": lr}},
                "metrics": {"seeds": 1, "methods": {"uniform": entry}}}

    plain = lrgrid.select([rec(0.001, 0.9, None), rec(0.01, 0.5, None)], [0.001, 0.01], [0],
                          0.001)
    half = lrgrid.select([rec(0.001, 0.9, 0.1), rec(0.01, 0.5, 0.7)], [0.001, 0.01], [0], 0.001)
    assert plain["methods"]["uniform"]["lr"] == 0.001
    assert half["methods"]["uniform"]["lr"] == 0.01


def test_dev_half_runs_end_to_end_with_every_dev_reading_method(tmp_path):
    from testkit.inprocess import run_stages

    raw = tiny_raw(alpha={"split": "dev_half"}, baselines=["diw", "forkmerge"],
                   budget={"match": "compute"})
    summary = run_stages(raw, tmp_path / "run")
    records = read_json(tmp_path / "run" / "metrics" / "per_epoch.json")["records"]
    assert records and all({"dev", "dev_fit", "dev_select"} <= r.keys() for r in records)
    for m in ("alphavil", "diw", "forkmerge"):
        assert 0.0 <= summary["methods"][m]["dev_select"] <= 1.0
    # the α record says it read the fit part: 24 of the 48 dev images
    alpha = read_json(tmp_path / "run" / "alphas" / "s0" / "ep0.json")
    assert alpha["dev_split"] == {"split": "dev_half", "examples": 24}
