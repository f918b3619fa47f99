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


# --- forkmerge.variant: published (alphavil/methods/forkmerge_published.py) -------------

from alphavil.methods import forkmerge_published as published  # noqa: E402

THREE = {"left": {"label": "left", "label_noise": 0.0},
         "twin": {"label": "left", "label_noise": 0.0},
         "junk": {"label": "left", "label_noise": 1.0}}


def _published(workdir, **forkmerge):
    return _ctx(workdir, tasks=THREE,
                forkmerge={"variant": "published", **forkmerge})


def _recorded(monkeypatch, ctx):
    """Every train_pass of the published branches: (branch, tasks of each step, θ after)."""
    calls = []
    original = published.train_pass

    def recording(model, batches, optimizer, *, where, **kw):
        stats = original(model, batches, optimizer, where=where, **kw)
        calls.append((where.rsplit(", ", 1)[1].removesuffix(" branch"),
                      [(b[0], len(b[2])) for b in batches], trainable_state(model)))
        return stats

    monkeypatch.setattr(published, "train_pass", recording)
    return calls


def test_published_sampling_draws_target_and_auxiliary_batches_1_to_1():
    """The published sampler: weight 1 for the target, 1/k for each of k auxiliary tasks,
    so half the steps are the target's whatever k; the auxiliary half split evenly. A
    sampler over all tasks equally (target 1/(k+1)) or one that sums every task in each
    step fails here."""
    g = torch.Generator().manual_seed(0)
    steps = published.step_tasks("t", ["a", "b", "c"], 6000, g)
    share = {t: steps.count(t) / len(steps) for t in "tabc"}
    assert share["t"] == pytest.approx(0.5, abs=0.02)
    assert all(share[t] == pytest.approx(1 / 6, abs=0.02) for t in "abc")
    steps = published.step_tasks("t", ["a"], 6000, g)
    assert steps.count("t") / 6000 == pytest.approx(0.5, abs=0.02)
    assert published.step_tasks("t", [], 7, g) == ["t"] * 7


def test_published_branches_take_equal_steps_of_full_batches_sampled_1_to_1(
        workdir, monkeypatch):
    """tiny params: 96 examples per task, batches of 32: 3 rounds. Every branch, the
    ranking branches of the pruning too, takes 3 steps of one full batch of one task; a
    top-k branch trains only on the target and its k auxiliary tasks; the passes the state
    counts are the passes trained."""
    ctx = _published(workdir, top_k=[0, 1, 2], checkpoints=1)
    calls = _recorded(monkeypatch, ctx)
    _, state = _run(ctx, "forkmerge", trainable_state(ctx.model), epochs=1)
    branches = {name: steps for name, steps, _ in calls}
    assert set(branches) == {"rank_twin", "rank_junk", "top_0", "top_1", "top_2"}
    assert all(len(steps) == 3 and all(n == 32 for _, n in steps)
               for steps in branches.values())
    ranking = state["forkmerge"]["ranking"]
    for k in (0, 1, 2):
        assert {t for t, _ in branches[f"top_{k}"]} <= {"left", *ranking[:k]}
    assert {t for t, _ in branches["rank_junk"]} <= {"left", "junk"}
    assert state["passes"] == sum(n for _, steps, _ in calls for _, n in steps) == 15 * 32
    # the next epoch ranks no more: three branches of 3 steps (ep1: n 2 is one epoch here)
    calls.clear()
    method = get_method("forkmerge")(ctx)
    _, state2 = method.run_epoch(ctx.params.epochs[1], trainable_state(ctx.model), state)
    assert sorted(name for name, _, _ in calls) == ["top_0", "top_1", "top_2"]
    assert state2["passes"] == 9 * 32 and state2["forkmerge"]["ranking"] == ranking


def test_pruning_ranks_a_helpful_task_above_a_random_label_one(workdir):
    """A task with the target's labels (one head per label kind: more target data) against
    one whose labels are random, with enough data (1,200 examples a task, 38 steps) that
    the tiny model learns: the ranking branch beside the helpful task scores better on the
    target's dev split (at 96 examples neither branch leaves chance accuracy and the order
    is the dev loss's noise). A ranking by the worse score, or by the last checkpoint's
    task order, fails here."""
    ctx = _ctx(workdir, tasks=THREE, model={"heads": "label", "channels": [4, 8], "hidden": 16},
               data={"n_train": 1200}, train={"lr": 0.003, "batch_size": 32},
               forkmerge={"variant": "published", "top_k": [0, 1], "checkpoints": 1})
    _, state = _run(ctx, "forkmerge", trainable_state(ctx.model), epochs=1)
    record = state["forkmerge"]
    assert record["ranking"] == ["twin", "junk"], record
    assert record["ranking_dev"]["twin"]["acc"] > record["ranking_dev"]["junk"]["acc"] + 0.1


def test_rank_tasks_orders_by_dev_score_keeping_ties_in_task_order():
    scores = {"a": (0.5, -1.0), "b": (0.8, -2.0), "c": (0.5, -0.5), "d": (0.5, -1.0)}
    assert published.rank_tasks(scores) == ["b", "c", "a", "d"]
    # the score: the metric first, then the lower loss
    assert published.score_key({"acc": 0.6, "loss": 3.0}, "acc") > published.score_key(
        {"acc": 0.5, "loss": 0.1}, "acc")


def test_top_k_branches_are_built_from_the_ranking(workdir, monkeypatch):
    """A ranking given by hand (junk first): top_1 trains on the target and junk alone."""
    ctx = _published(workdir, top_k=[1, 2], checkpoints=1)
    monkeypatch.setattr(published.Branches, "rank",
                        lambda self, theta, steps: (["junk", "twin"], {}))
    calls = _recorded(monkeypatch, ctx)
    _, state = _run(ctx, "forkmerge", trainable_state(ctx.model), epochs=1)
    tasks = {name: {t for t, _ in steps} for name, steps, _ in calls}
    assert tasks["top_1"] == {"left", "junk"} and tasks["top_2"] <= {"left", "junk", "twin"}
    assert state["forkmerge"]["ranking"] == ["junk", "twin"]
    assert set(state["forkmerge"]["weights"][0]) == {"top_1", "top_2"}


def test_a_branch_merges_its_best_dev_checkpoint(workdir, monkeypatch):
    """One branch (the target alone, weight 1) scored after each of its 3 steps, its dev
    score peaking after the first: the merged θ is that first checkpoint, not the end."""
    ctx = _published(workdir, top_k=[0], checkpoints=3)
    calls = _recorded(monkeypatch, ctx)
    accs = iter([0.9, 0.5, 0.7])
    real = published.evaluate
    monkeypatch.setattr(published, "evaluate", lambda model, split, task, params=None: (
        {"loss": 1.0, "acc": next(accs)} if params is None
        else real(model, split, task, params=params)))
    theta, state = _run(ctx, "forkmerge", trainable_state(ctx.model), epochs=1)
    assert [len(steps) for _, steps, _ in calls] == [1, 1, 1]
    assert state["forkmerge"]["checkpoint_step"] == [{"top_0": 1}]
    _assert_equal(theta, calls[0][2])
    assert any(not torch.equal(theta[n], calls[-1][2][n]) for n in theta)


def test_checkpoint_steps_are_evenly_spaced_and_end_the_branch():
    assert published.checkpoint_steps(10, 5) == [2, 4, 6, 8, 10]
    assert published.checkpoint_steps(3, 5) == [1, 2, 3]
    assert published.checkpoint_steps(7, 1) == [7]


def test_greedy_weights_as_published():
    """Branches best first; the second tried at a·1, the third at a·(1 + λ_2)/2, each kept
    only where the merge's score strictly improves; then normalised."""
    tried = []

    def score(w):  # best with the second branch at a third of the first, third never helps
        tried.append(dict(w))
        return -abs(w["b"] - 0.25) - w["c"]

    w = published.greedy_weights(["a", "b", "c"], score, [0.0, 0.5, 1 / 3])
    assert w["a"] == pytest.approx(0.75) and w["b"] == pytest.approx(0.25) and w["c"] == 0
    assert len(tried) == 6
    assert tried[4]["c"] == pytest.approx(0.5 * (1 + 1 / 3) / 2 / (1 + 1 / 3 + 2 / 3 / 2))
    assert published.greedy_weights(["a"], score, [0.5]) == {"a": 1.0}


def test_published_knobs_act(workdir, monkeypatch):
    """variant, top_k, checkpoints, lambdas and interval each change what they name."""
    ctx = _published(workdir)
    base = trainable_state(ctx.model)
    calls = _recorded(monkeypatch, ctx)
    pub, state = _run(ctx, "forkmerge", base, epochs=1)
    # defaults: top_k [0, 1, 2] of two auxiliary tasks, 5 checkpoints (3 steps: 3 of them)
    assert set(state["forkmerge"]["weights"][0]) == {"top_0", "top_1", "top_2"}
    assert all(len(steps) == 1 for _, steps, _ in calls) and len(calls) == 5 * 3
    ctx.params = changed(ctx.params, forkmerge={"variant": "two_branch", "top_k": None})
    two, state2 = _run(ctx, "forkmerge", base, epochs=1)
    assert "weights" not in state2["forkmerge"] and "lambda" in state2["forkmerge"]
    assert any(not torch.equal(two[n], pub[n]) for n in pub)
    # top_k [0, 2]: nothing to rank (no branch of some but not all), two branches
    ctx.params = changed(ctx.params, forkmerge={"variant": "published", "top_k": [0, 2]})
    calls.clear()
    _, state = _run(ctx, "forkmerge", base, epochs=1)
    assert sorted({name for name, _, _ in calls}) == ["top_0", "top_2"]
    assert "ranking" not in state["forkmerge"] and state["passes"] == 2 * 3 * 32
    # checkpoints 1: one evaluation at each branch's end
    ctx.params = changed(ctx.params, forkmerge={"checkpoints": 1})
    calls.clear()
    _run(ctx, "forkmerge", base, epochs=1)
    assert [len(steps) for _, steps, _ in calls] == [3, 3]
    # lambdas [0]: only the dev-best branch is kept
    ctx.params = changed(ctx.params, forkmerge={"lambdas": [0.0]})
    _, state = _run(ctx, "forkmerge", base, epochs=1)
    assert sorted(state["forkmerge"]["weights"][0].values()) == [0.0, 1.0]
    # interval 1: a fork and merge every round
    ctx.params = changed(ctx.params, forkmerge={"interval": 1})
    _, state = _run(ctx, "forkmerge", base, epochs=1)
    assert len(state["forkmerge"]["weights"]) == 3


@pytest.mark.parametrize("forkmerge, key, expected", [
    ({"variant": "publish"}, "variant", "did you mean published"),
    ({"variant": "published", "top_k": []}, "top_k", "a non-empty list"),
    ({"variant": "published", "top_k": [0, 0]}, "top_k", "distinct integers >= 0"),
    ({"variant": "published", "top_k": [-1]}, "top_k", "integers >= 0"),
    ({"variant": "published", "top_k": [1.5]}, "top_k", "integer"),
    ({"variant": "published", "top_k": 1}, "top_k", "list"),
    ({"variant": "published", "top_k": [0, 2]}, "top_k", "each at most 1"),
    ({"variant": "published", "checkpoints": 0}, "checkpoints", "integer >= 1"),
    ({"top_k": [0, 1]}, "top_k", "null unless variant is 'published'"),
    ({"checkpoints": 2}, "checkpoints", "null unless variant is 'published'"),
])
def test_bad_published_params_are_refused_naming_the_key(forkmerge, key, expected):
    with pytest.raises(ParamsError) as err:
        validate(tiny_raw(forkmerge=forkmerge))
    message = str(err.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"params.yaml: forkmerge.{key}: expected"), message
    assert expected in message, message


def test_published_defaults():
    p = validate(tiny_raw())
    assert (p.forkmerge.variant, p.forkmerge.top_k, p.forkmerge.checkpoints) == (
        "two_branch", None, None)
    assert published.default_top_k(5) == [0, 3, 5]  # the published default
    assert published.default_top_k(1) == [0, 1]
