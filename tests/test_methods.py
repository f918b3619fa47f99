"""Each training method behind the one interface (alphavil/methods/)."""

import numpy as np
import pytest
import torch

from alphavil import pipeline
from alphavil.config import ParamsError, load_params, validate
from alphavil.config.schema import DIW
from alphavil.training.context import RunContext
from alphavil.methods import METHODS, get_method
from alphavil.methods.diw import kmm_weights, largest_eigenvalue, project
from alphavil.models.multitask import load_trainable, trainable_state


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
    load_trainable(ctx.model, base)
    single, _ = _run(ctx, "single_task", epochs=2)
    assert uniform.keys() == single.keys()
    for name in uniform:
        assert torch.equal(uniform[name], single[name]), name
    assert any(not torch.equal(base[n], single[n]) for n in base)  # it did train


# What each baseline does that the others do not (target: left): the heads an epoch
# trains, and whether it records DIW importance weights. A registry entry wired to the
# wrong class, or a baseline missing here, fails below.
BASELINES = {"uniform": ({"left", "right"}, False),
             "single_task": ({"left"}, False),
             "diw": ({"left", "right"}, True),
             # the tiny case's dev split picks λ = 0, the target-only branch (test_forkmerge.py)
             "forkmerge": ({"left"}, False),
             # every task's head gets its own gradient, gated or not (test_gcs.py)
             "gcs": ({"left", "right"}, False)}


def test_the_registry_holds_alphavil_and_the_baselines(workdir):
    assert {n for n, cls in METHODS.items() if not cls.staged} == set(BASELINES)
    workdir()
    # αVIL runs as per-epoch stages: train_method refuses it before any compute
    with pytest.raises(ParamsError, match="'alphavil' runs as per-epoch stages"):
        pipeline.train_method("alphavil", 0)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_each_registered_baseline_trains_what_its_name_says(workdir, name):
    ctx = _ctx(workdir)
    base = trainable_state(ctx.model)
    theta, state = _run(ctx, name)
    heads, records_diw = BASELINES[name]
    trained = {t for t in ("left", "right")
               if not torch.equal(theta[f"heads.{t}.weight"], base[f"heads.{t}.weight"])}
    assert trained == heads
    assert all(torch.equal(theta[n], base[n]) for n in theta
               if n.startswith("heads.") and n.split(".")[1] not in heads)
    assert ("diw" in state) is records_diw


def test_diw_reweights_the_auxiliary_task_and_trains_with_the_weights(workdir):
    ctx = _ctx(workdir)
    base = trainable_state(ctx.model)
    diw, state = _run(ctx, "diw")
    load_trainable(ctx.model, base)
    uniform, _ = _run(ctx, "uniform")
    assert set(state["diw"]) == {"right"}  # the target keeps weight 1
    st = state["diw"]["right"]
    assert st["mean"] == pytest.approx(1.0, abs=1e-6)
    # really reweighted: a solver returning all ones would give min = max = 1, ESS 1
    assert 0.0 <= st["min"] < 0.9 and 1.1 < st["max"] <= ctx.params.diw.max_weight
    assert 0.0 < st["ess_fraction"] < 1.0
    # and the weights act: uniform MTL is DIW with every weight 1
    assert any(not torch.equal(diw[n], uniform[n]) for n in diw)


@pytest.mark.parametrize("bound", [1.34, 1.5, 3.0, 10.0])
def test_projection_gives_mean_one_within_bounds(bound):
    beta = torch.tensor([0.0, 0.1, 5.0, 40.0, 2.0, 0.3, 0.0, 7.0], dtype=torch.float64)
    out = project(beta, bound)
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


@pytest.mark.parametrize("bound", [10.0, 1.5])
def test_kmm_weights_reach_the_known_optimum_of_a_two_point_source(bound):
    """Source: 6 copies of point a and 4 of point b; target: copies of a. The weighted
    source mean equals the target's exactly when all mass is on a, so the optimum puts
    as much of the total mass 10 on a as B allows: 10/6 each if B >= 10/6, else B each,
    the rest on b's copies (in any split: they are the same point)."""
    a = torch.zeros(1, 2, dtype=torch.float64)
    b = torch.tensor([[3.0, 1.0]], dtype=torch.float64)
    beta = kmm_weights(torch.cat([a.repeat(6, 1), b.repeat(4, 1)]), a.repeat(5, 1),
                       max_weight=bound, iterations=100)
    on_a = min(10 / 6, bound)
    torch.testing.assert_close(beta[:6], torch.full((6,), on_a, dtype=torch.float64))
    assert float(beta[6:].sum()) == pytest.approx(10 - 6 * on_a, abs=1e-9)
    assert float(beta.min()) >= 0.0 and float(beta.max()) <= bound + 1e-12


def _kmm_qp(source, target, bound):
    """KMM's quadratic program, solved by scipy (SLSQP): min ½βᵀKβ − κᵀβ subject to
    0 <= β <= B and mean(β) = 1, Gaussian kernel with the median-heuristic bandwidth,
    κ_i = (n/m) Σ_j k(x_i, x'_j). Returns the objective and the optimal β."""
    from scipy.optimize import minimize

    n, m = len(source), len(target)
    both = torch.cat([source, target]).numpy()
    d2 = ((both[:, None, :] - both[None, :, :]) ** 2).sum(-1)
    k = np.exp(-d2 / np.median(d2[d2 > 0]))
    kss, kappa = k[:n, :n], k[:n, n:].sum(1) * n / m

    def objective(beta):
        return 0.5 * beta @ kss @ beta - kappa @ beta

    res = minimize(objective, np.ones(n), jac=lambda beta: kss @ beta - kappa,
                   bounds=[(0.0, bound)] * n, method="SLSQP",
                   constraints=[{"type": "eq", "fun": lambda beta: beta.mean() - 1.0,
                                 "jac": lambda beta: np.full(n, 1.0 / n)}],
                   options={"ftol": 1e-14, "maxiter": 1000})
    assert res.success, res.message
    return objective, res.x


def _shifted_problem():
    g = torch.Generator().manual_seed(0)
    source = torch.randn(40, 3, generator=g, dtype=torch.float64)
    target = 0.7 * torch.randn(30, 3, generator=g, dtype=torch.float64) + 0.8
    return source, target, 4.0


def test_kmm_weights_nearly_reach_the_scipy_optimum_of_the_same_program():
    source, target, bound = _shifted_problem()
    objective, best = _kmm_qp(source, target, bound)
    beta = kmm_weights(source, target, max_weight=bound, iterations=100).numpy()
    assert beta.mean() == pytest.approx(1.0, abs=1e-9)
    assert beta.min() >= 0.0 and beta.max() <= bound + 1e-12
    # of what reweighting can gain over β = 1 (no reweighting), all but 1 % is reached
    gain = objective(np.ones(len(beta))) - objective(best)
    assert gain > 1.0
    assert objective(beta) - objective(best) <= 0.01 * gain


def test_projection_is_the_closest_feasible_point():
    # scipy's SLSQP on min ‖x − v‖² s.t. 0 <= x <= B, mean(x) = 1
    from scipy.optimize import minimize

    v = np.array([0.0, 0.1, 5.0, 40.0, 2.0, 0.3, -1.0, 7.0])
    for bound in (1.34, 3.0, 10.0):
        res = minimize(lambda x: ((x - v) ** 2).sum(), np.ones_like(v),
                       jac=lambda x: 2 * (x - v), bounds=[(0, bound)] * len(v),
                       constraints=[{"type": "eq", "fun": lambda x: x.mean() - 1.0}],
                       method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
        out = project(torch.tensor(v), bound).numpy()
        np.testing.assert_allclose(out, res.x, atol=1e-6)


def test_kmm_weights_converge_to_the_scipy_optimum_of_the_same_program():
    source, target, bound = _shifted_problem()
    objective, best = _kmm_qp(source, target, bound)
    beta = kmm_weights(source, target, max_weight=bound, iterations=1000).numpy()
    gain = objective(np.ones(len(beta))) - objective(best)
    # the rescaling it replaced settled 0.4 % of the gain short at any step count
    assert objective(beta) - objective(best) <= 1e-6 * gain
    # the objective is flat along some directions: single weights agree to 0.01
    np.testing.assert_allclose(beta, best, atol=0.01)


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


def _kmm_one_solve(source, target, *, max_weight, iterations):
    """KMM as one solve over every auxiliary example (what kmm_weights computed before
    diw.max_examples existed), kept as the specification of the exact path: at today's
    sizes DIW must compute exactly this."""
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
        beta = project(beta - step * (kss @ beta - kappa), max_weight)
    return beta


def _clusters(n_near, n_far, n_target, seed=0, dim=2):
    g = torch.Generator().manual_seed(seed)
    near = torch.randn(n_near, dim, generator=g, dtype=torch.float64)
    far = torch.randn(n_far, dim, generator=g, dtype=torch.float64) + 4.0
    target = torch.randn(n_target, dim, generator=g, dtype=torch.float64)
    return torch.cat([near, far]), target


def test_default_max_examples_keeps_the_exact_kmm_bit_for_bit(tiny):
    """The default pipeline's DIW (3,000 examples per auxiliary task) is one exact solve:
    the same weights, byte for byte, as without the knob."""
    default = validate(tiny()).diw.max_examples  # params.yaml's, and the schema's default
    assert default >= 3000 and default == DIW().max_examples
    source, target = _clusters(1500, 1500, 500, dim=16)
    want = _kmm_one_solve(source, target, max_weight=10.0, iterations=100)
    got = kmm_weights(source, target, max_weight=10.0, iterations=100,
                      max_examples=default, g=torch.Generator().manual_seed(0))
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
