"""DIW: dynamic importance weighting (Fang et al., NeurIPS 2020), adapted to auxiliary
tasks. At the start of every epoch, with the current model, each auxiliary task's
training examples get importance weights by kernel mean matching (KMM) of their trunk
features against the target's dev features; the epoch then trains jointly (as uniform
MTL) with those per-example loss weights. Target examples keep weight 1. Steps follow
joint.schedule as uniform MTL's do; a batch that each_step repeats (a shorter task starting
over) keeps its examples' weights, fitted once per epoch. Details and the exact adaptation:
docs/algorithm.md."""

from __future__ import annotations

import math

import torch

from alphavil.config import EpochSpec
from alphavil.data.prepared import TaskSplit
from alphavil.runtime.seeding import generator
from alphavil.methods.joint import JointTraining


@torch.no_grad()
def features(model, split: TaskSplit, idx: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Trunk features on the model's device, returned on the CPU in float64: the KMM
    solve below is a few thousand-square kernel operations and a bisection that reads
    values at every iteration, which the CPU does without waiting on a device."""
    model.eval()
    idx = idx.to(split.device)
    out = [model.features(split.batch(idx[i:i + batch_size])[0])
           for i in range(0, len(idx), batch_size)]
    return torch.cat(out).double().cpu()


def kmm_weights(source: torch.Tensor, target: torch.Tensor, *, max_weight: float,
                iterations: int, max_examples: int | None = None,
                g: torch.Generator | None = None) -> torch.Tensor:
    """β ≥ 0, β ≤ B, mean(β) = 1, minimising ‖mean_i β_i φ(x_i) − mean_j φ(x'_j)‖² in the
    RKHS of a Gaussian kernel (median-heuristic bandwidth), by projected gradient.

    Up to `max_examples` source examples this is one exact KMM over all of them. Beyond,
    the n×n kernel would not fit (60,000 examples: 29 GB in float64), so the examples are
    split at random (generator `g`) into ⌈n / max_examples⌉ near-equal parts and each part
    gets its own KMM against the whole target (kmm_partitioned)."""
    if max_examples is not None and len(source) > max_examples:
        return kmm_partitioned(source, target, max_weight=max_weight, iterations=iterations,
                               max_examples=max_examples, g=g)
    n, m = len(source), len(target)
    both = torch.cat([source, target])
    d2 = torch.cdist(both, both).pow(2)
    sigma2 = d2[d2 > 0].median().clamp_min(1e-12)
    k = torch.exp(-d2 / sigma2)
    kss, kst = k[:n, :n], k[:n, n:]
    kappa = kst.sum(1) * (n / m)
    return solve_kmm(kss, kappa, max_weight=max_weight, iterations=iterations)


def solve_kmm(kss: torch.Tensor, kappa: torch.Tensor, *, max_weight: float,
              iterations: int) -> torch.Tensor:
    beta = torch.ones(len(kss), dtype=torch.float64, device=kss.device)
    # objective ½βᵀKβ − κᵀβ; a step of 1/λ_max(K) keeps projected gradient stable
    step = 1.0 / largest_eigenvalue(kss).clamp_min(1e-12)
    for _ in range(iterations):
        beta = project(beta - step * (kss @ beta - kappa), max_weight)
    return beta


def kmm_partitioned(source: torch.Tensor, target: torch.Tensor, *, max_weight: float,
                    iterations: int, max_examples: int,
                    g: torch.Generator | None) -> torch.Tensor:
    """KMM over a random partition of the source. Each part is a uniform random sample of
    the source distribution, so its KMM weights estimate the same density ratio
    p_target / p_source at its own points; every example gets a weight from a KMM solve (no
    extrapolation), and since each part's weights lie in [0, B] with mean 1, so do all of
    them. One bandwidth for every part: the median heuristic on a random subsample of
    max_examples points of source ∪ target (the exact path takes it over all of them).
    Memory is O(max_examples²) and time O(n · max_examples) per iteration, against O(n²)."""
    n, m = len(source), len(target)
    both = torch.cat([source, target])
    sub = both[torch.randperm(n + m, generator=g)[:max_examples]]
    d2 = torch.cdist(sub, sub).pow(2)
    sigma2 = d2[d2 > 0].median().clamp_min(1e-12)
    del d2
    beta = torch.empty(n, dtype=torch.float64, device=source.device)
    for part in torch.tensor_split(torch.randperm(n, generator=g), math.ceil(n / max_examples)):
        x = source[part]
        kss = torch.exp(-torch.cdist(x, x).pow(2) / sigma2)
        kappa = sum(torch.exp(-torch.cdist(x, t).pow(2) / sigma2).sum(1)
                    for t in torch.split(target, max_examples)) * (len(part) / m)
        beta[part] = solve_kmm(kss, kappa, max_weight=max_weight, iterations=iterations)
    return beta


def largest_eigenvalue(k: torch.Tensor, iterations: int = 30) -> torch.Tensor:
    """λ_max of a Gaussian kernel matrix by power iteration (a full eigendecomposition of
    3,000 auxiliary examples took 1 s per task and epoch, most of a DIW epoch's overhead).
    The kernel's entries are positive, so its top eigenvector is positive and the start
    from all-ones converges fast; the Rayleigh quotient can only underestimate λ_max, and
    gradient descent on the quadratic stays stable for any step below 2/λ_max."""
    v = torch.ones(len(k), dtype=k.dtype, device=k.device)
    for _ in range(iterations):
        v = k @ v
        v = v / v.norm().clamp_min(1e-300)
    return v @ (k @ v)


def project(beta: torch.Tensor, max_weight: float) -> torch.Tensor:
    """The Euclidean projection onto KMM's constraint set {0 <= β <= B, mean(β) = 1}:
    clip(β − τ, 0, B) with the shift τ that makes the mean 1. The mean is non-increasing in
    τ, so τ is found by bisection between τ = min(β) − B (every weight at B, mean B >= 1:
    max_weight >= 1 is validated) and τ = max(β) (every weight 0). Projected gradient with
    this projection converges to KMM's minimiser (a rescaling c·β instead settles short of
    it)."""
    lo, hi = float(beta.min()) - max_weight, float(beta.max())
    for _ in range(100):  # halves a bracket of width <= max(β) - min(β) + B each time
        mid = 0.5 * (lo + hi)
        if float((beta - mid).clamp(0.0, max_weight).mean()) > 1.0:
            lo = mid
        else:
            hi = mid
    return (beta - 0.5 * (lo + hi)).clamp(0.0, max_weight)


class DIW(JointTraining):
    def before_epoch(self, epoch: EpochSpec, state: dict,
                     indices: dict[str, torch.Tensor]) -> dict:
        # diw.max_examples: up to this many examples per auxiliary task, KMM is exact (one
        # kernel over all of them: 4,000 take 128 MB in float64); beyond, parts this large
        cfg = self.ctx.params.for_epoch(epoch.id).diw
        model, target = self.ctx.model, self.ctx.target
        dev = self.ctx.target_dev("fit")  # a training-time use (alpha.split)
        dev_feats = features(model, dev, torch.arange(len(dev)))
        self._weights: dict[str, torch.Tensor] = {}
        stats = {}
        for task, idx in indices.items():
            if task == target:
                continue
            split = self.ctx.split("train", task)
            beta = kmm_weights(features(model, split, idx), dev_feats,
                               max_weight=float(cfg.max_weight), iterations=cfg.iterations,
                               max_examples=cfg.max_examples,
                               g=generator(self.ctx.seed, epoch.id, task, "diw"))
            full = torch.ones(len(split), dtype=torch.float32)
            full[idx] = beta.float()
            self._weights[task] = full
            ess = float(beta.sum() ** 2 / (beta ** 2).sum()) / len(beta)
            stats[task] = {"mean": float(beta.mean()), "min": float(beta.min()),
                           "max": float(beta.max()), "ess_fraction": ess}
        return {**state, "diw": stats}

    def example_weights(self, epoch: EpochSpec, task: str, idx: torch.Tensor,
                        state: dict) -> float | torch.Tensor:
        return self._weights.get(task, 1.0)
