"""Each training method behind the one interface (alphavil/methods/)."""

import pytest
import torch

from alphavil.config import ParamsError, load_params, validate
from alphavil.context import RunContext
from alphavil.methods import METHODS, get_method
from alphavil.methods.diw import kmm_weights, largest_eigenvalue, normalise
from alphavil.models import trainable_state


def _ctx(workdir, **sections):
    workdir(**sections)
    return RunContext.build(load_params("params.yaml"), seed=0)


def _run(ctx, name, epochs=1):
    method = get_method(name)(ctx)
    theta, state = trainable_state(ctx.model), method.initial_state()
    for epoch in ctx.params.epochs[:epochs]:
        theta, state = method.run_epoch(epoch, theta, state)
    return theta, state


def test_uniform_with_only_the_target_task_equals_single_task(workdir):
    ctx = _ctx(workdir, tasks={"left": {"label": "left", "label_noise": 0.0}})
    base = trainable_state(ctx.model)
    uniform, _ = _run(ctx, "uniform", epochs=2)
    from alphavil.models import load_trainable
    load_trainable(ctx.model, base)
    single, _ = _run(ctx, "single_task", epochs=2)
    assert uniform.keys() == single.keys()
    for name in uniform:
        assert torch.equal(uniform[name], single[name]), name
    assert any(not torch.equal(base[n], single[n]) for n in base)  # it did train


def test_single_task_never_touches_auxiliary_heads(workdir):
    ctx = _ctx(workdir)
    base = trainable_state(ctx.model)
    theta, _ = _run(ctx, "single_task")
    right = [n for n in theta if n.startswith("heads.right.")]
    assert right and all(torch.equal(theta[n], base[n]) for n in right)
    assert not torch.equal(theta["heads.left.weight"], base["heads.left.weight"])


def test_uniform_trains_every_head(workdir):
    ctx = _ctx(workdir)
    base = trainable_state(ctx.model)
    theta, _ = _run(ctx, "uniform")
    for head in ("left", "right"):
        assert not torch.equal(theta[f"heads.{head}.weight"], base[f"heads.{head}.weight"])


def test_diw_records_weight_statistics_for_auxiliary_tasks_only(workdir):
    ctx = _ctx(workdir)
    _, state = _run(ctx, "diw")
    assert set(state["diw"]) == {"right"}
    st = state["diw"]["right"]
    assert st["mean"] == pytest.approx(1.0, abs=1e-6)
    assert 0.0 <= st["min"] <= 1.0 <= st["max"] <= ctx.params.raw["diw"]["max_weight"] + 1e-9
    assert 0.0 < st["ess_fraction"] <= 1.0


@pytest.mark.parametrize("bound", [1.34, 1.5, 3.0, 10.0])
def test_normalise_gives_mean_one_within_bounds(bound):
    beta = torch.tensor([0.0, 0.1, 5.0, 40.0, 2.0, 0.3, 0.0, 7.0], dtype=torch.float64)
    out = normalise(beta, bound)
    assert float(out.mean()) == pytest.approx(1.0, abs=1e-9)
    assert float(out.min()) >= 0.0 and float(out.max()) <= bound + 1e-12
    # order is kept: a larger raw weight never ends up smaller
    assert torch.all(out[beta.argsort()].diff() >= -1e-12)


def test_kmm_weights_favour_source_points_near_the_target():
    g = torch.Generator().manual_seed(0)
    near = torch.randn(50, 2, generator=g, dtype=torch.float64)
    far = torch.randn(50, 2, generator=g, dtype=torch.float64) + 4.0
    target = torch.randn(80, 2, generator=g, dtype=torch.float64)
    beta = kmm_weights(torch.cat([near, far]), target, max_weight=10.0, iterations=200)
    assert float(beta.mean()) == pytest.approx(1.0, abs=1e-9)
    assert float(beta.min()) >= 0 and float(beta.max()) <= 10.0 + 1e-12
    assert float(beta[:50].mean()) > 1.5 > 0.5 > float(beta[50:].mean())


def test_kmm_weights_are_near_one_when_distributions_match():
    g = torch.Generator().manual_seed(1)
    src = torch.randn(200, 3, generator=g, dtype=torch.float64)
    tgt = torch.randn(200, 3, generator=g, dtype=torch.float64)
    beta = kmm_weights(src, tgt, max_weight=10.0, iterations=100)
    assert 0.5 < float(beta.median()) < 1.5


def test_registry_rejects_unknown_method_names(tiny):
    with pytest.raises(KeyError, match="unknown method 'mgda'.*alphavil"):
        get_method("mgda")
    with pytest.raises(ParamsError, match="baselines: expected names from"):
        validate(tiny(baselines=["uniform", "mgda"]))


def test_alphavil_is_not_a_baseline(tiny):
    with pytest.raises(ParamsError, match="baselines"):
        validate(tiny(baselines=["alphavil"]))


def test_every_registered_method_has_its_registry_name():
    for name, cls in METHODS.items():
        assert cls.name == name


@pytest.mark.parametrize("key,value", [("max_weight", 0.5), ("iterations", 0)])
def test_diw_params_are_validated(tiny, key, value):
    with pytest.raises(ParamsError, match=f"diw.{key}"):
        validate(tiny(diw={key: value}))


def test_power_iteration_finds_the_kernels_largest_eigenvalue():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 8, generator=g, dtype=torch.float64)
    k = torch.exp(-torch.cdist(x, x).pow(2) / 8.0)
    exact = torch.linalg.eigvalsh(k)[-1]
    assert abs(float(largest_eigenvalue(k)) - float(exact)) < 1e-6 * float(exact)
