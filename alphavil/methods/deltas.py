"""αVIL's arithmetic: task deltas, the α-weighted combination, α estimation on the
target's dev loss, the merge, and the task-weight update (docs/algorithm.md)."""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn
from torch.func import functional_call

from alphavil import registry
from alphavil.data.prepared import TaskSplit
from alphavil.methods.alpha_fit import fit_record, lbfgs_minimise
from alphavil.models.multitask import load_trainable, trainable_state
from alphavil.training.loop import (PassStats, make_optimizer, minibatches, sample_indices,
                                    sample_size, task_batches, task_loss, train_pass)

# model weights θ, or a delta δ: parameter name -> tensor (not params.yaml's Params)
Weights = dict[str, torch.Tensor]


def task_parameter_names(model: nn.Module, task: str) -> list[str]:
    """What a fine-tune on `task` may change: the shared trunk and the task's head (its
    own, or the one it shares under model.heads: label)."""
    return model.parameter_names(task)


def delta_dtype(name: str) -> torch.dtype:
    """alphavil.delta_dtype: a torch dtype by its name (registry.DELTA_DTYPES)."""
    return getattr(torch, name)


def compute_delta(before: Weights, after: Weights, names: Iterable[str],
                  dtype: torch.dtype = torch.float32) -> Weights:
    """θ_k − θ, taken in float64 (exact for float32 weights) and stored as `dtype`:
    float64 makes θ + 1·δ_k reproduce θ_k bit for bit; float32 is within one rounding."""
    return {n: (after[n].double() - before[n].double()).to(dtype) for n in names}


def finetune_steps(n_examples: int, *, weight: float, ratio: float, batch_size: int) -> int:
    """Optimizer steps of finetune_task on a task with n_examples training examples.

    A task whose weight has reached 0 takes none: its loss w_k·L_k is 0 at every step, so
    SGD and Adam would leave θ exactly as it is (δ_k = 0 bit for bit) after a full pass.
    AdamW would only apply its weight decay, which is no contribution of the task; skipping
    makes δ_k = 0 for every optimizer."""
    if weight == 0.0:
        return 0
    return math.ceil(sample_size(n_examples, ratio) / batch_size)


# How a task weight w_k acts on its fine-tune (`alphavil.weight_mode`, docs/algorithm.md).
# "loss" is the paper's literal w_k·L_k. Adam and AdamW divide the gradient by its own
# running RMS, so a constant factor on the loss cancels (only w = 0 and the sign act);
# "step" scales the step size instead, lr_k = w_k·lr, which is the same thing as "loss"
# under plain SGD (also with momentum: the update is linear in the gradient) and keeps
# w_k acting under Adam and AdamW. (Names: registry.WEIGHT_MODES.)
def weight_scaling(weight: float, lr: float, mode: str) -> tuple[float, float]:
    """(learning rate, loss factor) of a fine-tune with task weight `weight`."""
    if mode == "step":
        if weight < 0:
            raise ValueError(f"task weight {weight} < 0 with alphavil.weight_mode 'step': a "
                             "negative step size is gradient ascent; keep "
                             "alphavil.weight_floor >= 0")
        return weight * lr, 1.0
    if mode == "loss":
        return lr, weight
    raise ValueError(f"alphavil.weight_mode: expected one of {list(registry.WEIGHT_MODES)}, "
                     f"got {mode!r}")


def finetune_task(model: nn.Module, theta: Weights, split: TaskSplit, task: str, *,
                  weight: float, ratio: float, batch_size: int, optimizer: str, lr: float,
                  g: torch.Generator, where: str, delta_dtype: torch.dtype = torch.float32,
                  weight_mode: str = "step",
                  on_step: Callable[[int, float], None] | None = None) -> tuple[Weights, PassStats]:
    """Start from θ, train one pass over a ρ-subset of the task's data with task weight w_k
    acting as `weight_mode` says (step size w_k·lr, or loss w_k·L_k), and return
    δ_k = θ_k − θ over the parameters the task touches (δ_k = 0 untrained when
    finetune_steps says 0)."""
    step_lr, loss_factor = weight_scaling(weight, lr, weight_mode)
    load_trainable(model, theta)
    names = task_parameter_names(model, task)
    if finetune_steps(len(split), weight=weight, ratio=ratio, batch_size=batch_size) == 0:
        return compute_delta(theta, theta, names, delta_dtype), PassStats()
    own = dict(model.named_parameters())
    opt = make_optimizer(optimizer, [own[n] for n in names], step_lr)
    idx = sample_indices(len(split), ratio, g)
    stats = train_pass(model, task_batches(task, split, idx, batch_size, loss_factor), opt,
                       where=where, on_step=on_step)
    after = trainable_state(model)
    return compute_delta(theta, after, names, delta_dtype), stats


def delta_norm(delta: Weights) -> float:
    """‖δ‖ over all its tensors, in float64."""
    return math.sqrt(sum(float(d.double().pow(2).sum()) for d in delta.values()))


def scale_delta(delta: Weights, factor: float) -> Weights:
    return delta if factor == 1.0 else {n: d * factor for n, d in delta.items()}


def theta_device(theta: Weights) -> torch.device:
    return next(iter(theta.values())).device


def combine(theta: Weights, deltas: list[Weights], alpha: torch.Tensor) -> Weights:
    """θ_α = θ + Σ_k α_k δ_k, differentiable with respect to α (alpha.combine: mean passes
    α/K here, see combine_scale)."""
    out: Weights = {}
    for name, value in theta.items():
        terms = [alpha[k] * d[name].to(value.dtype) for k, d in enumerate(deltas) if name in d]
        out[name] = value + torch.stack(terms).sum(0) if terms else value
    return out


def dev_loss(model: nn.Module, theta: Weights, deltas: list[Weights], alpha: torch.Tensor,
             dev: TaskSplit, target: str, idx: torch.Tensor) -> torch.Tensor:
    inputs, labels = dev.batch(idx)
    logits = functional_call(model, combine(theta, deltas, alpha), (inputs, target))
    return task_loss(logits, labels).mean()


@torch.no_grad()
def _full_dev_loss(model: nn.Module, theta: Weights, deltas: list[Weights], alpha: torch.Tensor,
                   dev: TaskSplit, target: str, batch_size: int) -> float:
    """The whole dev split's mean loss at α, in batches: one forward over the split at
    once held every layer's activations for all of it, ~100× the model's size."""
    params = combine(theta, deltas, alpha)
    total = 0.0
    for idx in minibatches(torch.arange(len(dev), device=dev.device), batch_size):
        inputs, labels = dev.batch(idx)
        logits = functional_call(model, params, (inputs, target))
        total += float(task_loss(logits, labels).double().sum())
    return total / len(dev)


# alpha.combine: how the fitted α_k weigh the deltas. "sum": θ + Σ α_k δ_k (the paper), so at
# α = 1 every task's whole fine-tune is added, K steps on the trunk at once; "mean":
# θ + (1/K) Σ α_k δ_k, so α = 1 is the average of the K fine-tuned models (one step).
def combine_scale(combine_mode: str, k: int) -> float:
    """The factor on every α_k in θ + Σ factor·α_k δ_k, for k deltas."""
    if combine_mode == "sum":
        return 1.0
    if combine_mode == "mean":
        return 1.0 / k if k else 1.0
    raise ValueError(f"alpha.combine: expected one of {list(registry.COMBINES)}, "
                     f"got {combine_mode!r}")


def _dev_loss_and_grad(model: nn.Module, theta: Weights, deltas: list[Weights], dev: TaskSplit,
                       target: str, batch_size: int, scale: float):
    """(α) -> (the whole dev split's mean loss at α, its gradient in α): one backward per
    batch, so memory is that of one batch (as _full_dev_loss)."""
    n = len(dev)

    def loss_and_grad(at: torch.Tensor) -> tuple[float, torch.Tensor]:
        alpha = at.detach().clone().requires_grad_(True)
        total, grad = 0.0, torch.zeros_like(alpha)
        for idx in minibatches(torch.arange(n, device=dev.device), batch_size):
            inputs, labels = dev.batch(idx)
            logits = functional_call(model, combine(theta, deltas, alpha * scale),
                                     (inputs, target))
            loss = task_loss(logits, labels).double().sum() / n
            grad += torch.autograd.grad(loss, alpha)[0]
            total += float(loss.detach())
        return total, grad
    return loss_and_grad


def guard_record(model: nn.Module, theta: Weights, deltas: list[Weights], fitted: torch.Tensor,
                 dev: TaskSplit, target: str, batch_size: int, scale: float, where: str) -> dict:
    """alpha.guard: the whole dev split's loss of θ and of θ + Σ scale·α_k δ_k."""
    at_theta = _full_dev_loss(model, theta, [], fitted[:0], dev, target, batch_size)
    at_fitted = _full_dev_loss(model, theta, deltas, fitted * scale, dev, target, batch_size)
    if not math.isfinite(at_fitted):
        raise FloatingPointError(f"{where}: dev loss of target task {target!r} is "
                                 f"{at_fitted} at the fitted α = {fitted.tolist()}")
    return {"dev_loss_theta": at_theta, "dev_loss_fitted": at_fitted,
            "accepted": at_fitted <= at_theta}


def estimate_alpha(model: nn.Module, theta: Weights, deltas: list[Weights], dev: TaskSplit,
                   target: str, *, init: float, steps: int, lr: float, optimizer: str,
                   batch_size: int, g: torch.Generator, where: str,
                   guard: bool = False, scale: float = 1.0, fit: str = "budget",
                   tol: float = 1e-5, max_iter: int = 100,
                   record_fit: bool = True) -> tuple[list[float], dict]:
    """Minimise the target's dev loss of θ + Σ scale·α_k δ_k over α only (θ, δ frozen).

    `fit` (alpha.fit): "budget" takes `steps` steps of `optimizer` on shuffled dev
    minibatches (the paper); "converge" runs L-BFGS on the whole dev split to a gradient
    norm <= tol or max_iter iterations (alpha_fit.py). With `record_fit` the trace's "fit"
    entry says how the fit ended: final whole-dev gradient norm, steps, dev passes and
    examples, converged (under budget this costs one more dev pass, for the gradient).
    With `guard`, also compare the whole dev split's loss at the fitted α with that of θ
    itself; the trace's "guard" entry says whether the merge may go ahead (merge_accepted)."""
    model.eval()
    if fit not in registry.ALPHA_FITS:
        raise ValueError(f"alpha.fit: expected one of {list(registry.ALPHA_FITS)}, got {fit!r}")
    alpha = torch.full((len(deltas),), float(init), dtype=torch.float32, requires_grad=True,
                       device=dev.device)
    before = _full_dev_loss(model, theta, deltas, alpha * scale, dev, target, batch_size)
    if not math.isfinite(before):
        raise FloatingPointError(f"{where}: dev loss of target task {target!r} is {before} "
                                 f"at α = {init} (before any α step)")
    loss_and_grad = _dev_loss_and_grad(model, theta, deltas, dev, target, batch_size, scale)
    if fit == "converge":
        # float64 α: the line search compares losses and steps below float32's resolution
        alpha = alpha.detach().double().requires_grad_(True)
        losses, run = lbfgs_minimise(alpha, loss_and_grad, tol=tol, max_iter=max_iter,
                                     where=where) if len(deltas) else \
            ([], {"iterations": 0, "evaluations": 0, "grad": alpha.detach()})
        record = fit_record("converge", run["grad"], run["iterations"], run["evaluations"],
                            len(dev), run["evaluations"] * len(dev), tol)
    else:
        losses, seen = _fit_budget(model, theta, deltas, dev, target, alpha, steps=steps,
                                   lr=lr, optimizer=optimizer, batch_size=batch_size, g=g,
                                   where=where, scale=scale)
        if record_fit:
            grad = loss_and_grad(alpha.detach())[1] if len(deltas) else alpha.detach()
            record = fit_record("budget", grad, steps, steps, len(torch.unique(seen)),
                                len(seen), tol)
    trace = {"dev_loss_at_init": before, "step_losses": losses}
    if record_fit or fit != "budget":
        trace["fit"] = record
    # Without the guard there is no whole-dev pass at the fitted α: that is the merged
    # checkpoint's dev loss, which `evaluate` reports per epoch, so it is not computed twice.
    if guard:
        trace["guard"] = guard_record(model, theta, deltas, alpha.detach(), dev, target,
                                      batch_size, scale, where)
    return alpha.detach().tolist(), trace


def _fit_budget(model: nn.Module, theta: Weights, deltas: list[Weights], dev: TaskSplit,
                target: str, alpha: torch.Tensor, *, steps: int, lr: float, optimizer: str,
                batch_size: int, g: torch.Generator, where: str,
                scale: float) -> tuple[list[float], torch.Tensor]:
    """alpha.fit budget: `steps` steps on shuffled dev minibatches (α changed in place).
    Returns each step's minibatch loss and the dev indices the steps read."""
    opt = make_optimizer(optimizer, [alpha], lr) if optimizer == "adam" else \
        make_optimizer("sgd", [alpha], lr)
    losses: list[float] = []
    batches: list[torch.Tensor] = []
    seen: list[torch.Tensor] = [torch.zeros(0, dtype=torch.long, device=dev.device)]
    for step in range(steps):
        if not batches:  # a fresh shuffled pass over the dev split
            order = torch.randperm(len(dev), generator=g).to(dev.device)
            batches = list(minibatches(order, batch_size))
        seen.append(batches[0])
        loss = dev_loss(model, theta, deltas, alpha * scale, dev, target, batches.pop(0))
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"{where}: dev loss of target task {target!r} is {value} "
                                     f"at α step {step} (α = {alpha.detach().tolist()})")
        opt.zero_grad()
        loss.backward()
        opt.step()
        if not torch.isfinite(alpha).all():
            raise FloatingPointError(f"{where}: α became {alpha.detach().tolist()} at step "
                                     f"{step}; lower alpha.lr")
        losses.append(value)
    return losses, torch.cat(seen)


def merge_accepted(alpha_record: dict) -> bool:
    """False only where alpha.guard found the merge worse than θ on the target's dev loss."""
    return bool(alpha_record.get("guard", {}).get("accepted", True))


def merge(theta: Weights, weighted_deltas: Iterable[tuple[float, Weights]]) -> Weights:
    """θ + Σ_k α_k δ_k, accumulated in float64 one delta at a time (only one delta is
    held in memory), then cast back to each parameter's dtype."""
    acc = {n: v.double() for n, v in theta.items()}
    for a, delta in weighted_deltas:
        for name, d in delta.items():
            acc[name].add_(d.double(), alpha=a)
    return {n: acc[n].to(theta[n].dtype) for n in theta}


# alphavil.weight_rule (by name in registry.WEIGHT_RULES): the next w_k from w_k and α_k
def additive_rule(w: float, a: float) -> float:
    return w + (a - 1.0)  # the paper's rule


def alpha_rule(w: float, a: float) -> float:
    return a


def multiplicative_rule(w: float, a: float) -> float:
    # not in the paper: α scales w, so a shrunk task (w > 0) grows back by α > 1
    return w * a


def update_weights(weights: dict[str, float], alphas: dict[str, float | None], rule: str,
                   floor: float | None) -> dict[str, float]:
    """The next epoch's task weights. A task whose α is None (not estimated: it took no
    step this epoch) keeps its weight: no rule or floor acts on a number it did not earn."""
    fn = registry.load(registry.WEIGHT_RULES[rule])
    new = {}
    for t, w in weights.items():
        a = alphas.get(t)
        if a is None:
            new[t] = w
            continue
        w = fn(w, a)
        new[t] = w if floor is None else max(floor, w)
    return new
