"""alpha.combine (alphavil/core.py COMBINES): θ + Σ α_k δ_k (sum, the paper) or
θ + (1/K) Σ α_k δ_k (mean, α = 1 is the average of the K fine-tuned models)."""

import pytest
import torch

from alphavil.config import ParamsError, load_params, validate
from alphavil.training.context import RunContext
from alphavil.methods.deltas import _full_dev_loss, combine_scale
from alphavil.methods.alphavil import AlphaVIL
from alphavil.models.multitask import trainable_state

from testkit.params import changed, tiny_raw


def _epoch(workdir, combine, steps=3):
    workdir(alpha={"combine": combine, "steps": steps})
    ctx = RunContext.build(load_params("params.yaml"), seed=0)
    method, epoch = AlphaVIL(ctx), ctx.params.epochs[0]
    theta, state = trainable_state(ctx.model), method.initial_state()
    deltas = {t: method.finetune(epoch, theta, state, t)[0] for t in ctx.tasks}
    alphas, trace = method.estimate(epoch, theta, deltas, state)
    return ctx, method, theta, deltas, alphas, trace


def test_mean_at_alpha_one_is_the_average_of_the_finetuned_models(workdir):
    ctx, method, theta, deltas, _, _ = _epoch(workdir, "mean")
    ones = {t: 1.0 for t in deltas}
    merged = method.merge(theta, ones, deltas.items())
    for n, v in theta.items():
        tuned = [v.double() + d[n].double() for d in deltas.values() if n in d]
        # a head only its own task touched is averaged with θ for the other task
        tuned += [v.double()] * (len(deltas) - len(tuned))
        expected = torch.stack(tuned).mean(0).to(v.dtype)
        assert torch.allclose(merged[n], expected, rtol=0, atol=1e-6), n
    # under sum the same α adds both whole deltas
    ctx.params = changed(ctx.params, alpha={"combine": "sum"})
    summed = method.merge(theta, ones, deltas.items())
    n = "trunk.fc.1.weight"
    assert torch.allclose(summed[n], theta[n] + deltas["left"][n] + deltas["right"][n], atol=1e-6)
    assert not torch.allclose(summed[n], merged[n], atol=1e-4)


def test_alpha_is_fitted_on_the_combination_the_merge_applies(workdir):
    """The dev loss α starts from is that of θ + (1/K) Σ δ_k under mean and of θ + Σ δ_k
    under sum; the fine-tunes themselves do not change (the knob acts on α only)."""
    ctx, _, theta, d_mean, a_mean, t_mean = _epoch(workdir, "mean")
    dev = ctx.split("dev", ctx.target)
    deltas = [d_mean[t] for t in ctx.tasks]
    half = torch.full((2,), 0.5)
    assert t_mean["dev_loss_at_init"] == pytest.approx(
        _full_dev_loss(ctx.model, theta, deltas, half, dev, ctx.target, 128), rel=1e-6)
    ctx2, _, theta2, d_sum, a_sum, t_sum = _epoch(workdir, "sum")
    assert t_sum["dev_loss_at_init"] == pytest.approx(
        _full_dev_loss(ctx2.model, theta2, deltas, torch.ones(2), dev, ctx.target, 128),
        rel=1e-6)
    for t in d_mean:
        for n in d_mean[t]:
            assert torch.equal(d_mean[t][n], d_sum[t][n]), (t, n)
    assert a_mean != a_sum


def test_combine_scale():
    assert combine_scale("sum", 4) == 1.0
    assert combine_scale("mean", 4) == 0.25
    assert combine_scale("mean", 0) == 1.0  # nothing to weigh: nothing is added either
    with pytest.raises(ValueError, match="alpha.combine"):
        combine_scale("max", 2)


@pytest.mark.parametrize("value", ["avg", 1, None])
def test_alpha_combine_must_be_sum_or_mean(value):
    raw = tiny_raw()
    raw["alpha"]["combine"] = value
    with pytest.raises(ParamsError, match=r"alpha\.combine: expected one of"):
        validate(raw)
