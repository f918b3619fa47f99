"""Each training method behind the one interface (alphavil/methods/)."""

import pytest
import torch

from alphavil.config import ParamsError, load_params, validate
from alphavil.context import RunContext
from alphavil.methods import METHODS, get_method
from alphavil.methods.diw import MAX_EXAMPLES, kmm_weights, largest_eigenvalue, normalise
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


@pytest.mark.parametrize("key,value", [("max_weight", 0.5), ("iterations", 0),
                                       ("max_examples", 1), ("max_examples", 2.5)])
def test_diw_params_are_validated(tiny, key, value):
    with pytest.raises(ParamsError, match=f"diw.{key}"):
        validate(tiny(diw={key: value}))


def test_power_iteration_finds_the_kernels_largest_eigenvalue():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 8, generator=g, dtype=torch.float64)
    k = torch.exp(-torch.cdist(x, x).pow(2) / 8.0)
    exact = torch.linalg.eigvalsh(k)[-1]
    assert abs(float(largest_eigenvalue(k)) - float(exact)) < 1e-6 * float(exact)


def _kmm_before_max_examples(source, target, *, max_weight, iterations):
    """kmm_weights as it was before diw.max_examples existed (commit f4ac462), kept as the
    specification of the exact path: at today's sizes DIW must compute exactly this."""
    n, m = len(source), len(target)
    both = torch.cat([source, target])
    d2 = torch.cdist(both, both).pow(2)
    sigma2 = d2[d2 > 0].median().clamp_min(1e-12)
    k = torch.exp(-d2 / sigma2)
    kss, kst = k[:n, :n], k[:n, n:]
    kappa = kst.sum(1) * (n / m)
    beta = torch.ones(n, dtype=torch.float64)
    step = 1.0 / largest_eigenvalue(kss).clamp_min(1e-12)
    for _ in range(iterations):
        beta = normalise((beta - step * (kss @ beta - kappa)), max_weight)
    return beta


def _clusters(n_near, n_far, n_target, seed=0, dim=2):
    g = torch.Generator().manual_seed(seed)
    near = torch.randn(n_near, dim, generator=g, dtype=torch.float64)
    far = torch.randn(n_far, dim, generator=g, dtype=torch.float64) + 4.0
    target = torch.randn(n_target, dim, generator=g, dtype=torch.float64)
    return torch.cat([near, far]), target


def test_default_max_examples_keeps_the_exact_kmm_bit_for_bit():
    """The default pipeline's DIW (3,000 examples per auxiliary task) is unchanged: the
    same weights, byte for byte, as before the knob existed."""
    assert MAX_EXAMPLES >= 3000
    source, target = _clusters(1500, 1500, 500, dim=16)
    want = _kmm_before_max_examples(source, target, max_weight=10.0, iterations=100)
    got = kmm_weights(source, target, max_weight=10.0, iterations=100,
                      max_examples=MAX_EXAMPLES, g=torch.Generator().manual_seed(0))
    assert torch.equal(got, want)


def test_max_examples_partitions_the_kmm():
    """Past max_examples every part is its own KMM: weights still in [0, B] with mean 1,
    still favouring the source points near the target, and differing from the exact
    solve; a different generator draws a different partition."""
    source, target = _clusters(300, 300, 200)
    exact = kmm_weights(source, target, max_weight=10.0, iterations=200)
    parts = kmm_weights(source, target, max_weight=10.0, iterations=200, max_examples=150,
                        g=torch.Generator().manual_seed(0))
    assert not torch.equal(parts, exact)
    assert float(parts.mean()) == pytest.approx(1.0, abs=1e-9)
    assert float(parts.min()) >= 0 and float(parts.max()) <= 10.0 + 1e-12
    assert float(parts[:300].mean()) > 1.5 > 0.5 > float(parts[300:].mean())
    assert float(torch.corrcoef(torch.stack([parts, exact]))[0, 1]) > 0.8
    again = kmm_weights(source, target, max_weight=10.0, iterations=200, max_examples=150,
                        g=torch.Generator().manual_seed(0))
    other = kmm_weights(source, target, max_weight=10.0, iterations=200, max_examples=150,
                        g=torch.Generator().manual_seed(1))
    assert torch.equal(again, parts) and not torch.equal(other, parts)


def test_max_examples_bounds_every_kernel_block(monkeypatch):
    """No n×n (or (n+m)²) matrix is built past max_examples: that is what the knob is for."""
    shapes = []
    real = torch.cdist

    def spy(a, b, *args, **kwargs):
        shapes.append((len(a), len(b)))
        return real(a, b, *args, **kwargs)

    monkeypatch.setattr(torch, "cdist", spy)
    source, target = _clusters(1000, 1000, 700)
    beta = kmm_weights(source, target, max_weight=10.0, iterations=20, max_examples=256,
                       g=torch.Generator().manual_seed(0))
    assert len(beta) == 2000 and shapes
    assert max(max(s) for s in shapes) <= 256
    # each of the ⌈2000 / 256⌉ = 8 parts (250 examples) meets the whole target (700 rows,
    # in blocks); the other calls are the bandwidth's subsample and each part's own kernel
    assert sum(b for a, b in shapes if a == 250 and b != 250) == 8 * 700


def test_diw_max_examples_reaches_the_kmm(workdir, monkeypatch):
    """diw.max_examples from params.yaml is what the method passes, with a seeded
    generator per (seed, epoch, task)."""
    import alphavil.methods.diw as diw

    seen = []
    real = diw.kmm_weights

    def spy(source, target, **kw):
        seen.append((len(source), kw["max_examples"], kw["g"].initial_seed()))
        return real(source, target, **kw)

    monkeypatch.setattr(diw, "kmm_weights", spy)
    ctx = _ctx(workdir, diw={"max_examples": 40})
    theta, _ = _run(ctx, "diw", epochs=2)
    assert [s[:2] for s in seen] == [(96, 40), (96, 40)]
    assert seen[0][2] != seen[1][2]  # each epoch draws its own partition
