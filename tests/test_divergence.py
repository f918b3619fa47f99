"""train.on_divergence (alphavil/pipeline.py train_method): `stop` (default) ends the run at a
baseline's first NaN/inf loss; `mark` ends only that baseline's training, keeps its last
finite parameters in the later checkpoints and reports where it diverged, so that one
method's divergence does not take an lr-grid value away from the others (alphavil/lrgrid.py).
"""

import pytest
import torch

from alphavil import pipeline
from alphavil.store import layout
from alphavil.store.artifacts import load_checkpoint
from alphavil.config import ParamsError, load_params, validate
from alphavil.report import markdown, summarise

from testkit.params import tiny_raw

# ep1 at an lr that overflows the tiny CNN within a few Adam steps; ep0 trains normally
DIVERGING_EP1 = {"epochs": [{"id": "ep0", "prev": "base", "n": 1, "overrides": {}},
                            {"id": "ep1", "prev": "ep0", "n": 2,
                             "overrides": {"lr": 1.0e12}}]}


def _checkpoint(method, epoch):
    return load_checkpoint(layout.checkpoint_dir(method, 0, epoch), seed=0, epoch=epoch,
                           method=method)


def test_stop_is_the_default_and_ends_the_run_at_the_first_nonfinite_loss(workdir):
    workdir(baselines=["uniform"], **DIVERGING_EP1)
    pipeline.train_base(0)
    with pytest.raises(FloatingPointError,
                       match=r"uniform, seed 0, epoch ep1: loss .* is (nan|inf)"):
        pipeline.train_method("uniform", 0)
    assert not layout.checkpoint_dir("uniform", 0, "ep1").exists()


def test_mark_keeps_the_last_finite_parameters_and_says_where_it_diverged(workdir):
    workdir(baselines=["uniform"], train={"on_divergence": "mark"}, **DIVERGING_EP1)
    pipeline.train_base(0)
    pipeline.train_method("uniform", 0)  # no error
    theta0, state0 = _checkpoint("uniform", "ep0")
    theta1, state1 = _checkpoint("uniform", "ep1")
    base, _ = load_checkpoint(layout.checkpoint_dir("uniform", 0, "base"), seed=0,
                              epoch="base", method="base")
    # ep0 trained (it is not θ_0); ep1 is ep0's parameters bit for bit, not the NaN ones
    assert any(not torch.equal(theta0[n], base[n]) for n in theta0)
    assert all(torch.equal(theta0[n], theta1[n]) for n in theta0)
    assert "diverged" not in state0
    assert state1["diverged"]["epoch"] == "ep1" and "uniform" in state1["diverged"]["error"]


def test_mark_changes_nothing_for_a_method_that_does_not_diverge(workdir):
    out = {}
    for mode in ("stop", "mark"):
        workdir(baselines=["uniform"], train={"on_divergence": mode})
        pipeline.train_base(0)
        pipeline.train_method("uniform", 0)
        out[mode] = [(p.relative_to(layout.BASELINES), p.read_bytes())
                     for p in sorted(layout.BASELINES.rglob("*")) if p.is_file()]
    assert out["stop"] == out["mark"] and out["mark"]


def _records(diverged_seed=None):
    """Hand-made evaluate records: uniform diverged on `diverged_seed` in ep1."""
    recs = []
    for seed in (0, 1):
        for method in ("alphavil", "uniform"):
            for ep, n in (("base", 0), ("ep0", 1), ("ep1", 2)):
                r = {"method": method, "seed": seed, "epoch": ep, "n": n,
                     "dev": {"acc": 0.5 + 0.1 * n}, "test": {"acc": 0.4 + 0.1 * n + 0.01 * seed},
                     "weights": {"left": 1.0, "right": 1.0} if method == "alphavil" else None,
                     "alpha": ({"left": 1.0, "right": 1.0} if method == "alphavil"
                               and ep != "base" else None)}
                if method == "uniform" and seed == diverged_seed and ep == "ep1":
                    r["diverged"] = "ep1"
                recs.append(r)
    return recs


def test_the_summary_names_the_diverged_seeds_and_only_when_there_are_some(workdir):
    workdir(seeds=[0, 1], baselines=["uniform"])
    params = load_params("params.yaml")
    clean = summarise(params, _records(), "acc")
    assert "diverged" not in clean["methods"]["uniform"]
    assert "diverged" not in markdown(clean, params)
    marked = summarise(params, _records(diverged_seed=1), "acc")
    assert marked["methods"]["uniform"]["diverged"] == {"1": "ep1"}
    assert "diverged" not in marked["methods"]["alphavil"]
    assert "**uniform diverged** (loss NaN/inf; seed 1 in ep1)" in markdown(marked, params)


def test_a_value_other_than_stop_or_mark_is_refused():
    with pytest.raises(ParamsError, match="train.on_divergence"):
        validate(tiny_raw(train={"on_divergence": "ignore"}))
