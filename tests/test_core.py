import pytest
import torch

from alphavil.config import load_params
from alphavil.training.context import RunContext
from alphavil.methods.deltas import (combine, compute_delta, dev_loss, estimate_alpha,
                                     finetune_steps, finetune_task, merge, merge_accepted,
                                     task_parameter_names, update_weights, weight_scaling)
from alphavil.methods.alphavil import AlphaVIL
from alphavil.models.multitask import build_model, trainable_state
from alphavil.runtime.seeding import generator
from alphavil.training.loop import (evaluate, make_optimizer, sample_indices, task_batches,
                                    train_pass)


@pytest.fixture
def ctx(workdir):
    workdir()
    return RunContext.build(load_params("params.yaml"), seed=0)


def _finetune(ctx, task, dtype=torch.float32, theta=None):
    theta = theta if theta is not None else trainable_state(ctx.model)
    delta, stats = finetune_task(ctx.model, theta, ctx.split("train", task), task, weight=1.0,
                                 ratio=1.0, batch_size=16, optimizer="adam", lr=1e-2,
                                 g=generator(0, "t", task), where="test", delta_dtype=dtype)
    return theta, delta, trainable_state(ctx.model), stats


def test_alpha_zero_leaves_theta_unchanged(ctx):
    theta, d_left, _, _ = _finetune(ctx, "left")
    _, d_right, _, _ = _finetune(ctx, "right", theta=theta)
    merged = merge(theta, [(0.0, d_left), (0.0, d_right)])
    for name in theta:
        assert torch.equal(merged[name], theta[name]), name


def test_one_task_with_alpha_one_reproduces_its_finetune_exactly(ctx):
    theta, delta, tuned, stats = _finetune(ctx, "left", dtype=torch.float64)
    assert stats.steps > 0
    merged = merge(theta, [(1.0, delta)])
    changed = 0
    for name in theta:
        assert torch.equal(merged[name], tuned[name]), name
        changed += int(not torch.equal(tuned[name], theta[name]))
    assert changed > 0  # the fine-tune really moved the trunk and the head


def test_float32_deltas_reproduce_the_finetune_within_one_rounding(ctx):
    theta, delta, tuned, _ = _finetune(ctx, "left", dtype=torch.float32)
    merged = merge(theta, [(1.0, delta)])
    eps = torch.finfo(torch.float32).eps
    for name in theta:
        # one rounding of δ to float32, one of the sum
        bound = eps * (delta.get(name, torch.zeros(())).abs() + tuned[name].abs())
        assert ((merged[name] - tuned[name]).abs() <= bound).all(), name


@pytest.mark.parametrize("optimizer, moves", [("sgd", False), ("adam", False), ("adamw", True)])
def test_zero_weight_task_is_skipped_with_the_delta_a_full_pass_gives(ctx, optimizer, moves):
    theta = trainable_state(ctx.model)
    names = task_parameter_names(ctx.model, "right")
    delta, stats = finetune_task(ctx.model, theta, ctx.split("train", "right"), "right",
                                 weight=0.0, ratio=0.2, batch_size=16, optimizer=optimizer,
                                 lr=1e-2, g=generator(0, "t", "right"), where="test")
    assert stats.steps == 0 and set(delta) == set(names)
    assert all(torch.equal(d, torch.zeros_like(d)) for d in delta.values())
    # the pass it skips: loss 0·L at every step
    own = dict(ctx.model.named_parameters())
    opt = make_optimizer(optimizer, [own[n] for n in names], 1e-2)
    idx = sample_indices(len(ctx.split("train", "right")), 0.2, generator(0, "t", "right"))
    ran = train_pass(ctx.model, task_batches("right", ctx.split("train", "right"), idx, 16, 0.0),
                     opt)
    assert ran.steps > 0
    after = trainable_state(ctx.model)
    assert any(not torch.equal(after[n], theta[n]) for n in names) == moves  # adamw: decay only
    if not moves:
        full = compute_delta(theta, after, names)
        for n in names:
            assert torch.equal(full[n], delta[n]), n


@pytest.mark.parametrize("weight, ratio, batch_size", [(1.0, 1.0, 16), (0.5, 0.3, 7),
                                                       (2.0, 0.001, 32), (0.0, 1.0, 16)])
def test_finetune_steps_is_the_number_of_steps_finetune_task_takes(ctx, weight, ratio,
                                                                   batch_size):
    # the fine-tune stage's progress bar is sized by finetune_steps
    split = ctx.split("train", "left")
    _, stats = finetune_task(ctx.model, trainable_state(ctx.model), split, "left",
                             weight=weight, ratio=ratio, batch_size=batch_size,
                             optimizer="sgd", lr=1e-3, g=generator(0, "t", "left"),
                             where="test")
    assert finetune_steps(len(split), weight=weight, ratio=ratio,
                          batch_size=batch_size) == stats.steps
    assert (stats.steps == 0) == (weight == 0.0)


def test_delta_covers_trunk_and_own_head_only(ctx):
    _, delta, _, _ = _finetune(ctx, "left")
    assert set(delta) == set(task_parameter_names(ctx.model, "left"))
    assert not any(n.startswith("heads.right.") for n in delta)
    assert any(n.startswith("heads.left.") for n in delta)
    assert any(n.startswith("trunk.") for n in delta)


def test_compute_delta_is_the_difference():
    before = {"a": torch.tensor([1.0, 2.0])}
    after = {"a": torch.tensor([1.5, 1.0])}
    assert torch.equal(compute_delta(before, after, ["a"])["a"], torch.tensor([0.5, -1.0]))


def test_combine_is_theta_plus_weighted_deltas():
    theta = {"a": torch.tensor([1.0, 1.0]), "b": torch.tensor([2.0])}
    deltas = [{"a": torch.tensor([1.0, 0.0])}, {"a": torch.tensor([0.0, 2.0]),
                                                "b": torch.tensor([4.0])}]
    out = combine(theta, deltas, torch.tensor([0.5, -1.0]))
    assert torch.equal(out["a"], torch.tensor([1.5, -1.0]))
    assert torch.equal(out["b"], torch.tensor([-2.0]))


def test_alpha_gradient_matches_finite_differences(ctx):
    model = ctx.model.double()
    theta = {k: v.double() for k, v in trainable_state(model).items()}
    g = torch.Generator().manual_seed(1)
    deltas = [{n: 0.05 * torch.randn(v.shape, generator=g, dtype=torch.float64)
               for n, v in theta.items() if n.startswith("trunk.") or n.startswith(f"heads.{t}.")}
              for t in ("left", "right")]
    dev = ctx.split("dev", "left")
    idx = torch.arange(len(dev))
    alpha = torch.tensor([0.7, 1.3], dtype=torch.float64, requires_grad=True)
    loss = dev_loss(model, theta, deltas, alpha, dev, "left", idx)
    (grad,) = torch.autograd.grad(loss, alpha)
    eps = 1e-6
    numeric = []
    for k in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[k] = eps
        with torch.no_grad():
            hi = dev_loss(model, theta, deltas, alpha + e, dev, "left", idx)
            lo = dev_loss(model, theta, deltas, alpha - e, dev, "left", idx)
        numeric.append(float((hi - lo) / (2 * eps)))
    assert grad.abs().max() > 1e-4  # a non-trivial gradient
    torch.testing.assert_close(grad, torch.tensor(numeric, dtype=torch.float64),
                               rtol=1e-5, atol=1e-8)


def test_alpha_estimation_undoes_a_harmful_delta_and_lowers_target_dev_loss(workdir):
    # One real fine-tune of the target and one harmful auxiliary delta (noise): at α = 1 the
    # merge is far worse than θ, so a working α fit must move α a long way and win back
    # most of the dev loss. (Deltas of the tiny model's real fine-tunes barely move the dev
    # loss from chance, so "lower" alone would hold on rounding with α never moving.)
    workdir(alpha={"steps": 10, "lr": 0.1, "init": 1.0})
    ctx = RunContext.build(load_params("params.yaml"), seed=0)
    method = AlphaVIL(ctx)
    epoch = ctx.params.epochs[0]
    theta = trainable_state(ctx.model)
    state = method.initial_state()
    deltas = {t: method.finetune(epoch, theta, state, t)[0] for t in ctx.tasks}
    g = torch.Generator().manual_seed(0)
    deltas["right"] = {n: 0.3 * torch.randn(d.shape, generator=g)
                       for n, d in deltas["right"].items()}
    alphas, trace = method.estimate(epoch, theta, deltas, state)
    assert set(alphas) == set(ctx.tasks)
    assert len(trace["step_losses"]) == 10
    params = combine(theta, list(deltas.values()), torch.tensor([alphas[t] for t in deltas]))
    dev = ctx.split("dev", ctx.target)
    before, after = trace["dev_loss_at_init"], evaluate(ctx.model, dev, ctx.target,
                                                        params=params)["loss"]
    assert before > 4.0  # the noise really hurts at α = 1 (θ alone: ~2.3, chance on 10 classes)
    assert after < 0.6 * before, (before, after)
    assert alphas["right"] < 0.5, alphas  # the harmful delta's α fell far from init 1.0
    assert all(abs(a - 1.0) > 0.05 for a in alphas.values()), alphas


def test_each_alpha_step_fits_a_fresh_minibatch_of_seeded_shuffled_dev_passes(ctx, monkeypatch):
    # Fitting α on one dev minibatch every step overfits α to those rows. Each step must see
    # the next batch of a shuffled pass over the dev split, a new shuffle drawn from the
    # seeded generator g when a pass is used up.
    import alphavil.methods.deltas as core

    seen = []
    real = core.dev_loss

    def spy(model, theta, deltas, alpha, dev, target, idx):
        seen.append(idx.tolist())
        return real(model, theta, deltas, alpha, dev, target, idx)

    monkeypatch.setattr(core, "dev_loss", spy)
    theta = trainable_state(ctx.model)
    dev = ctx.split("dev", ctx.target)
    n, batch = len(dev), 16
    assert n == 48  # three batches a pass: 5 steps are one pass and two batches of the next
    estimate_alpha(ctx.model, theta, [theta], dev, ctx.target, init=1.0, steps=5, lr=0.05,
                   optimizer="adam", batch_size=batch, g=generator(0, "a"), where="test")
    assert len(seen) == 5
    assert sorted(sum(seen[:3], [])) == list(range(n))  # the first pass covers dev once
    assert len({tuple(b) for b in seen}) == 5
    g = generator(0, "a")
    first, second = torch.randperm(n, generator=g), torch.randperm(n, generator=g)
    expected = [first[i:i + batch].tolist() for i in range(0, n, batch)] + \
        [second[i:i + batch].tolist() for i in range(0, 2 * batch, batch)]
    assert seen == expected


@pytest.mark.parametrize("rule,floor,expected", [
    ("additive", None, {"a": 1.5, "b": -1.5}),
    ("additive", 0.0, {"a": 1.5, "b": 0.0}),
    ("alpha", None, {"a": 1.5, "b": -0.5}),
])
def test_weight_update_rules(rule, floor, expected):
    new = update_weights({"a": 1.0, "b": 0.0}, {"a": 1.5, "b": -0.5}, rule, floor)
    assert new == pytest.approx(expected)


def test_additive_rule_accumulates_over_epochs():
    w = {"a": 1.0}
    for a in (1.2, 0.9, 1.1):
        w = update_weights(w, {"a": a}, "additive", None)
    assert w["a"] == pytest.approx(1.0 + 0.2 - 0.1 + 0.1)


def _guarded(ctx, theta, deltas, steps):
    return estimate_alpha(
        ctx.model, theta, deltas, ctx.split("dev", ctx.target), ctx.target, init=1.0,
        steps=steps, lr=0.05, optimizer="adam", batch_size=16, g=generator(0, "a"),
        where="test", guard=True)


def test_guard_rejects_a_merge_worse_than_theta_and_accepts_a_better_one(ctx):
    theta = trainable_state(ctx.model)
    g = torch.Generator().manual_seed(0)
    noise = {n: 3.0 * torch.randn(v.shape, generator=g) for n, v in theta.items()}
    # 0 α steps: the merge is θ + 1·noise, far worse than θ on any data
    _, trace = _guarded(ctx, theta, [noise], steps=0)
    dev = ctx.split("dev", ctx.target)
    g_ = trace["guard"]
    assert g_["dev_loss_theta"] == pytest.approx(evaluate(ctx.model, dev, ctx.target,
                                                          params=theta)["loss"], rel=1e-6)
    assert g_["dev_loss_fitted"] > g_["dev_loss_theta"] and not g_["accepted"]
    assert not merge_accepted(trace)
    # a small step down the gradient of the target's dev loss
    params = {n: v.clone().requires_grad_(True) for n, v in theta.items()}
    idx = torch.arange(len(dev))
    dev_loss(ctx.model, params, [], torch.zeros(0), dev, ctx.target, idx).backward()
    descent = {n: -0.05 * p.grad for n, p in params.items() if p.grad is not None}
    _, trace = _guarded(ctx, theta, [descent], steps=0)
    assert trace["guard"]["dev_loss_fitted"] < trace["guard"]["dev_loss_theta"]
    assert merge_accepted(trace)
    assert merge_accepted({"alpha": {}})  # no guard entry: the paper's unconditional merge


def test_a_rejected_merge_keeps_theta_and_the_weights(ctx):
    method = AlphaVIL(ctx)
    epoch = ctx.params.epochs[0]
    theta = trainable_state(ctx.model)
    state = {"weights": {"left": 1.0, "right": 0.5}}
    g = torch.Generator().manual_seed(0)
    noise = {n: 3.0 * torch.randn(v.shape, generator=g) for n, v in theta.items()}
    alphas = {"left": 1.2, "right": 0.1}
    kept = method.merge(theta, alphas, [("left", noise), ("right", noise)], accepted=False)
    assert all(torch.equal(kept[n], theta[n]) for n in theta)
    new = method.next_state(epoch, state, alphas, accepted=False)
    assert new == {"weights": state["weights"], "alpha": alphas, "merge_rejected": True}
    moved = method.merge(theta, alphas, [("left", noise), ("right", noise)])
    assert not all(torch.equal(moved[n], theta[n]) for n in theta)
    assert method.next_state(epoch, state, alphas)["weights"] != state["weights"]


def test_guard_off_writes_no_guard_entry(ctx):
    theta = trainable_state(ctx.model)
    _, trace = estimate_alpha(ctx.model, theta, [theta], ctx.split("dev", ctx.target),
                              ctx.target, init=1.0, steps=1, lr=0.05, optimizer="adam",
                              batch_size=16, g=generator(0, "a"), where="test")
    assert "guard" not in trace


# --- alphavil.weight_mode: a task weight must act under every optimizer ---------------

def _delta_at(ctx, weight, optimizer, mode, lr):
    """δ of the same fine-tune (same θ_0, same batches) at task weight `weight`."""
    theta = trainable_state(build_model(ctx.params.model, {"left": 10, "right": 10},
                                        ctx.meta, seed=0))
    delta, _ = finetune_task(ctx.model, theta, ctx.split("train", "left"), "left",
                             weight=weight, ratio=1.0, batch_size=16, optimizer=optimizer,
                             lr=lr, g=generator(0, "w", "left"), where="test",
                             delta_dtype=torch.float64, weight_mode=mode)
    return delta


def _norm(delta):
    return float(torch.sqrt(sum((d.double() ** 2).sum() for d in delta.values())))


LRS = {"sgd": 0.02, "adam": 1e-3, "adamw": 1e-3}


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_step_mode_weight_changes_the_delta_under_every_optimizer(ctx, optimizer):
    full = _delta_at(ctx, 1.0, optimizer, "step", LRS[optimizer])
    half = _delta_at(ctx, 0.5, optimizer, "step", LRS[optimizer])
    ratio = _norm(half) / _norm(full)
    # half the step size moves θ clearly less far (not exactly half: the path differs)
    assert 0.3 < ratio < 0.8, ratio


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_loss_mode_weight_is_inert_under_adam(ctx, optimizer):
    # why step mode exists: Adam divides a constant loss factor out again (up to ε)
    full = _delta_at(ctx, 1.0, optimizer, "loss", LRS[optimizer])
    half = _delta_at(ctx, 0.5, optimizer, "loss", LRS[optimizer])
    assert _norm(half) / _norm(full) == pytest.approx(1.0, abs=0.02)


def test_step_and_loss_mode_agree_under_sgd(ctx):
    # SGD (with or without momentum) is linear in the gradient: lr·(w·g) = (w·lr)·g
    step = _delta_at(ctx, 0.3, "sgd", "step", LRS["sgd"])
    loss = _delta_at(ctx, 0.3, "sgd", "loss", LRS["sgd"])
    assert _norm(step) > 0
    for n in step:
        torch.testing.assert_close(step[n], loss[n], rtol=1e-4, atol=1e-7)


def test_step_mode_refuses_a_negative_weight():
    assert weight_scaling(0.5, 0.01, "step") == (0.005, 1.0)
    assert weight_scaling(0.5, 0.01, "loss") == (0.01, 0.5)
    with pytest.raises(ValueError, match="negative step size"):
        weight_scaling(-0.1, 0.01, "step")
    assert weight_scaling(-0.1, 0.01, "loss") == (0.01, -0.1)  # the paper's literal rule


# --- switched-off tasks: a task that took no step keeps its weight --------------------

@pytest.mark.parametrize("rule, init", [("alpha", 1.0), ("additive", 0.7), ("alpha", 1.3)])
def test_a_switched_off_task_stays_off_and_its_alpha_is_not_estimated(workdir, rule, init):
    workdir(alphavil={"weight_rule": rule}, alpha={"init": init})
    ctx = RunContext.build(load_params("params.yaml"), seed=0)
    method = AlphaVIL(ctx)
    theta = trainable_state(ctx.model)
    state = {"weights": {"left": 1.0, "right": 0.0}}
    for epoch in ctx.params.epochs:
        theta, state = method.run_epoch(epoch, theta, state)
        assert state["alpha"]["right"] is None  # not init, not a number
        assert state["weights"]["right"] == 0.0
        assert isinstance(state["alpha"]["left"], float)
    assert state["weights"]["left"] != 1.0  # the active task's weight did move


def test_with_every_task_switched_off_theta_and_weights_stay(ctx):
    method = AlphaVIL(ctx)
    epoch = ctx.params.epochs[0]
    theta = trainable_state(ctx.model)
    state = {"weights": {"left": 0.0, "right": 0.0}}
    merged, new = method.run_epoch(epoch, theta, state)
    assert all(torch.equal(merged[n], theta[n]) for n in theta)
    assert new["weights"] == state["weights"]
    assert new["alpha"] == {"left": None, "right": None}


def test_update_weights_keeps_the_weight_of_a_task_without_alpha():
    new = update_weights({"a": 0.0, "b": 0.4}, {"a": None, "b": 1.5}, "alpha", 0.1)
    assert new == {"a": 0.0, "b": 1.5}  # the floor does not act on an unestimated task
