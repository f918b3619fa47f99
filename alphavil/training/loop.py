"""The one training loop and the one evaluation, shared by every method.

A batch is (task, inputs, labels, weight): `weight` scales the loss, either a scalar
(αVIL's task weight w_k) or one value per example (DIW's importance weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from alphavil.runtime import distributed
from alphavil.data.prepared import TaskSplit

Batch = tuple[str, dict[str, torch.Tensor], torch.Tensor, "float | torch.Tensor"]


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example loss: cross-entropy for classification heads, squared error for a
    one-output (regression) head."""
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float(), reduction="none")
    return F.cross_entropy(logits, labels, reduction="none")


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float):
    """alphavil/optim.py's per-tensor updates on the CPU, torch.optim's fused kernels on
    an accelerator (see optim.py for why not the torch.optim classes)."""
    from alphavil.training.optim import make

    params = list(params)
    return make(name, params, lr, fused=bool(params) and params[0].device.type != "cpu")


def sample_size(n: int, ratio: float) -> int:
    """How many of n examples one pass at ratio ρ (the paper's sample ratio) sees."""
    return max(1, math.ceil(ratio * n))


def sample_indices(n: int, ratio: float, g: torch.Generator) -> torch.Tensor:
    """A random subset of sample_size(n, ratio) example indices."""
    return torch.randperm(n, generator=g)[: sample_size(n, ratio)]


def minibatches(indices: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(indices), batch_size):
        yield indices[start:start + batch_size]


def task_batches(task: str, split: TaskSplit, indices: torch.Tensor, batch_size: int,
                 weight: float | torch.Tensor = 1.0) -> Iterator[Batch]:
    """Batches of one task; a per-example weight tensor is indexed alongside. The pass's
    indices (and weights) move to the data's device once, not batch by batch."""
    indices = indices.to(split.device)
    if isinstance(weight, torch.Tensor):
        weight = weight.to(split.device)
    for idx in minibatches(indices, batch_size):
        inputs, labels = split.batch(idx)
        w = weight[idx] if isinstance(weight, torch.Tensor) else weight
        yield task, inputs, labels, w


@dataclass
class PassStats:
    steps: int = 0
    examples: int = 0
    loss_sum: float = 0.0
    losses: list[float] = field(default_factory=list)


# Steps between loss checks on an accelerator. Reading a loss value waits until the
# device has computed it, which every step would leave the GPU idle while Python queues
# the next step; on the CPU the value is there at once, and each step is checked before
# its update as ever.
CHECK_EVERY = 64


def train_pass(model: nn.Module, batches: Iterable[Batch | list[Batch]], optimizer,
               *, where: str = "training", on_step: Callable[[int, float], None] | None = None,
               check_every: int | None = None) -> PassStats:
    """One pass over `batches`, one optimizer step each; an item that is a list of batches
    (joint.schedule each_step: one of every task) is one step on the sum of their losses.
    Stops with an error naming `where`, the task and the first step whose loss is NaN/inf.
    Loss values are read `check_every` steps at a time (default: every step on the CPU,
    CHECK_EVERY on an accelerator): the check, the stats and on_step(step, loss) see every
    step in order, only later."""
    model.train()
    stats = PassStats()
    parallel = distributed.active()
    pending: list[list[tuple[str, torch.Tensor]]] = []  # each step's (task, loss) not yet checked

    def check() -> None:
        flat = [v for step in pending for _, v in step]
        values = iter(torch.stack(flat).tolist() if flat else [])
        for step in pending:
            total = 0.0
            for (task, _), value in zip(step, values):
                if not math.isfinite(value):
                    raise FloatingPointError(f"{where}: loss of task {task!r} is {value} at "
                                             f"step {stats.steps}; stopping (lower train.lr?)")
                total += value
            stats.steps += 1
            stats.loss_sum += total
            stats.losses.append(total)
            if on_step is not None:
                on_step(stats.steps, total)
        pending.clear()

    for group in batches:
        group = group if isinstance(group, list) else [group]
        if not group:
            continue
        optimizer.zero_grad(set_to_none=True)
        pending.append([])
        # a backward per batch: the gradients add up to the summed loss's, and only one
        # batch's graph is held at a time
        for task, inputs, labels, weight in group:
            if parallel:
                loss, value = _sharded_loss(model, task, inputs, labels, weight)
            else:
                per_example = task_loss(model(inputs, task), labels)
                loss = (per_example * weight).mean()
                value = loss.detach()
            pending[-1].append((task, value))
            loss.backward()
            stats.examples += len(labels)
        if check_every is None:
            check_every = 1 if value.device.type == "cpu" else CHECK_EVERY
        if len(pending) >= check_every:
            check()
        if parallel:
            distributed.all_reduce_sum_([p.grad for p in model.parameters()
                                         if p.grad is not None])
        optimizer.step()
    check()
    return stats


def _sharded_loss(model: nn.Module, task: str, inputs: dict[str, torch.Tensor],
                  labels: torch.Tensor, weight) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's part of the batch loss, scaled so that the ranks' gradients sum to the
    full batch's; also the full batch's loss value, the same on every rank (so a NaN
    stops all of them at the same step)."""
    n = len(labels)
    part = distributed.shard(n)
    per_example = task_loss(model({k: v[part] for k, v in inputs.items()}, task),
                            labels[part])
    w = weight[part] if isinstance(weight, torch.Tensor) else weight
    loss = (per_example * w).sum() / n
    total = loss.detach().clone()
    distributed.all_reduce_sum_([total])
    return loss, total


@torch.no_grad()
def predict(model: nn.Module, split: TaskSplit, task: str, batch_size: int = 512,
            params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    model.eval()
    outs = []
    idx_all = torch.arange(len(split), device=split.device)
    for idx in minibatches(idx_all, batch_size):
        inputs, _ = split.batch(idx)
        if params is None:
            outs.append(model(inputs, task))
        else:
            outs.append(torch.func.functional_call(model, params, (inputs, task)))
    return torch.cat(outs)


def evaluate(model: nn.Module, split: TaskSplit, task: str, batch_size: int = 512,
             params: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """Mean loss plus the task's metrics (accuracy for classification, plus the GLUE
    metrics the split asks for)."""
    from alphavil.training.metrics import score

    logits = predict(model, split, task, batch_size, params)
    loss = float(task_loss(logits, split.labels).mean())
    return {"loss": loss, **score(logits, split.labels, split.metrics)}


def evaluate_parts(model: nn.Module, split: TaskSplit, task: str, parts: dict[str, torch.Tensor],
                   batch_size: int = 512) -> dict[str, dict[str, float]]:
    """evaluate() of the whole split (key "") and of each part (index tensors), from one
    prediction pass: a part's metrics are the whole split's predictions restricted to it."""
    from alphavil.training.metrics import score

    logits = predict(model, split, task, batch_size)
    out = {}
    for name, idx in {"": None, **parts}.items():
        lg, y = (logits, split.labels) if idx is None else (logits[idx.to(logits.device)],
                                                            split.labels[idx.to(logits.device)])
        out[name] = {"loss": float(task_loss(lg, y).mean()), **score(lg, y, split.metrics)}
    return out
