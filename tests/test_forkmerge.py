"""ForkMerge (alphavil/methods/forkmerge.py): its branches are single-task and uniform
training, its merge weight is the dev-best of the grid, and its params act."""

import pytest
import torch
import torch.nn.functional as F

from alphavil.config import ParamsError, load_params, validate
from alphavil.training.context import RunContext
from alphavil.methods import get_method
from alphavil.methods.forkmerge import pick_lambda
from alphavil.models.multitask import load_trainable, trainable_state

from testkit.params import changed, tiny_raw


def _ctx(workdir, **sections):
    workdir(**sections)
    return RunContext.build(load_params("params.yaml"), seed=0)


def _run(ctx, name, theta, epochs=2):
    method = get_method(name)(ctx)
    state = method.initial_state()
    for epoch in ctx.params.epochs[:epochs]:
        theta, state = method.run_epoch(epoch, theta, state)
    return theta, state


def _assert_equal(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("lam, same_as", [(0.0, "single_task"), (1.0, "uniform")])
def test_a_grid_of_one_branch_is_that_branch_trained_alone(workdir, lam, same_as):
    """λ fixed at 0 keeps only the target-only branch: single-task training on the same
    batches, bit for bit; λ fixed at 1 keeps only the joint branch: uniform MTL. Swapped
    branches, a branch trained on other batches or a merge that drifts fail here."""
    ctx = _ctx(workdir, forkmerge={"lambdas": [lam]})
    base = trainable_state(ctx.model)
    fm, state = _run(ctx, "forkmerge", base)
    other, _ = _run(ctx, same_as, base)
    _assert_equal(fm, other)
    assert any(not torch.equal(base[n], fm[n]) for n in base)  # it did train
    assert state["forkmerge"]["lambda"] == [lam]


def _dev_scores(ctx, theta):
    """Accuracy and mean cross-entropy of the target on its whole dev split, by hand."""
    load_trainable(ctx.model, theta)
    dev = ctx.split("dev", ctx.target)
    inputs, labels = dev.batch(torch.arange(len(dev)))
    with torch.no_grad():
        logits = ctx.model(inputs, ctx.target)
    return (float((logits.argmax(-1) == labels).double().mean()),
            float(F.cross_entropy(logits.double(), labels)))


def test_the_merge_weight_is_the_dev_best_of_the_grid(workdir):
    """One epoch with the default grid: the branches are single-task and uniform training
    (test above), so every candidate merge can be scored by hand; ForkMerge must pick
    the best dev accuracy (ties: lowest dev loss) and return that merge. The case is built
    so that the best λ lies inside the grid (an auxiliary copy of the target's labels, a
    learning rate that moves the tiny model), where a search that keeps the first or the
    last candidate, or weights the wrong branch, picks another. (At this size every merge
    has the same dev accuracy, so the loss decides; pick_lambda's own test covers the
    metric coming first.)"""
    ctx = _ctx(workdir, train={"lr": 0.01},
               tasks={"left": {"label": "left", "label_noise": 0.0},
                      "twin": {"label": "left", "label_noise": 0.0}})
    lambdas = ctx.params.forkmerge.lambdas
    base = trainable_state(ctx.model)
    target_branch, _ = _run(ctx, "single_task", base, epochs=1)
    joint_branch, _ = _run(ctx, "uniform", base, epochs=1)

    def mix(lam):
        return {n: (base[n].double() + (1 - lam) * (target_branch[n].double() - base[n].double())
                    + lam * (joint_branch[n].double() - base[n].double())).float() for n in base}

    scores = {lam: _dev_scores(ctx, mix(lam)) for lam in lambdas}
    best = max(lambdas, key=lambda lam: (scores[lam][0], -scores[lam][1]))
    assert 0.0 < best < 1.0, scores  # the construction holds
    fm, state = _run(ctx, "forkmerge", base, epochs=1)
    assert state["forkmerge"]["lambda"] == [best]
    assert state["forkmerge"]["dev_loss"][0] == pytest.approx(scores[best][1], rel=1e-5)
    for n in fm:
        torch.testing.assert_close(fm[n], mix(best)[n], rtol=0, atol=1e-6)


def test_pick_lambda_takes_the_best_metric_then_the_lowest_loss():
    scores = {0.0: {"acc": 0.5, "loss": 1.0}, 0.3: {"acc": 0.8, "loss": 0.9},
              0.6: {"acc": 0.8, "loss": 0.7}, 1.0: {"acc": 0.7, "loss": 0.1}}
    assert pick_lambda(scores, "acc") == 0.6
    # an NLU target's own metric (here mcc) decides, not accuracy
    scores = {0.0: {"acc": 0.9, "mcc": 0.1, "loss": 0.5},
              1.0: {"acc": 0.6, "mcc": 0.4, "loss": 0.6}}
    assert pick_lambda(scores, "mcc") == 1.0


def test_interval_sets_how_often_it_forks_and_merges(workdir):
    """tiny params: 96 training examples per task in batches of 32, so 3 rounds per epoch.
    interval 1 merges after every round (3 λ per epoch), null once per epoch."""
    ctx = _ctx(workdir, forkmerge={"interval": 1})
    base = trainable_state(ctx.model)
    _, state = _run(ctx, "forkmerge", base, epochs=1)
    assert len(state["forkmerge"]["lambda"]) == 3
    grid = ctx.params.forkmerge.lambdas
    assert all(lam in grid for lam in state["forkmerge"]["lambda"])
    ctx.params = changed(ctx.params, forkmerge={"interval": 2})  # 2 rounds, then the last one
    _, state = _run(ctx, "forkmerge", base, epochs=1)
    assert len(state["forkmerge"]["lambda"]) == 2
    ctx.params = changed(ctx.params, forkmerge={"interval": None})
    _, state = _run(ctx, "forkmerge", base, epochs=1)
    assert len(state["forkmerge"]["lambda"]) == 1
    # and the merges act: with λ held at 0.5 (at 0 or 1 a merge is one branch, and the
    # branches' optimizers carry on, so the interval would not show), merging every round
    # is another trajectory than merging once
    ctx.params = changed(ctx.params, forkmerge={"lambdas": [0.5]})
    once, _ = _run(ctx, "forkmerge", base, epochs=1)
    ctx.params = changed(ctx.params, forkmerge={"interval": 1})
    often, _ = _run(ctx, "forkmerge", base, epochs=1)
    assert any(not torch.equal(often[n], once[n]) for n in once)


@pytest.mark.parametrize("key, value", [("lambdas", []), ("lambdas", [0.5, 1.5]),
                                        ("lambdas", [0.5, 0.5]), ("lambdas", ["0.5"]),
                                        ("lambdas", [[0.5]]), ("lambdas", 0.5),
                                        ("interval", 0), ("interval", 1.5)])
def test_bad_forkmerge_params_are_refused_naming_the_key(key, value):
    with pytest.raises(ParamsError, match=f"forkmerge.{key}: expected"):
        validate(tiny_raw(forkmerge={key: value}))


def test_forkmerge_params_default_to_the_documented_grid():
    raw = tiny_raw(baselines=["forkmerge"])
    del raw["forkmerge"]
    p = validate(raw)
    assert p.methods == ["alphavil", "forkmerge"]
    assert p.forkmerge.lambdas == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
                                   1.0] == tiny_raw()["forkmerge"]["lambdas"]
    assert p.forkmerge.interval is None is tiny_raw()["forkmerge"]["interval"]
