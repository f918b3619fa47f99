"""GCS: gradient cosine similarity (Du et al. 2018, "Adapting Auxiliary Losses Using
Gradient Similarity"). Every step takes one batch of the target and one of each auxiliary
task and computes each task's gradient separately. On the shared trunk, an auxiliary
gradient is added to the target's only where their cosine is positive (`gcs.weighted`:
scaled by the cosine, the paper's weighted variant); each task's head gets its own task's
gradient, as in joint training. Under `model.heads: label` a head that an auxiliary task
shares with the target is gated like the trunk (it is part of what the target's loss
reaches), and auxiliary tasks sharing a head of their own sum their gradients there. An epoch has as many steps as the target has batches
(as single_task); an auxiliary task with fewer batches starts over. This is GCS's own
schedule (it needs every task's gradient at every step): joint.schedule does not apply."""

from __future__ import annotations

import math
from itertools import cycle, islice

import torch

from alphavil.runtime import distributed
from alphavil.training.budget import batch_sizes
from alphavil.config import EpochSpec
from alphavil.models.multitask import load_trainable, trainable_state
from alphavil.training.loop import Batch, _sharded_loss, task_loss
from alphavil.methods.base import Weights
from alphavil.methods.joint import JointTraining


def cosine(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
           names: list[str]) -> torch.Tensor:
    """cos(a, b) of two gradients over the parameters `names`, as one vector (a parameter
    missing from one of them, i.e. not reached by its loss, counts as 0), accumulated in
    float64; 0 where either gradient is 0 (no direction to agree with)."""
    device = next(iter(a.values())).device if a else None
    zero = torch.zeros((), dtype=torch.float64, device=device)
    dot = sum(((a[n].double() * b[n].double()).sum() for n in names if n in a and n in b), zero)
    na = torch.sqrt(sum((a[n].double().pow(2).sum() for n in names if n in a), zero))
    nb = torch.sqrt(sum((b[n].double().pow(2).sum() for n in names if n in b), zero))
    return torch.where(na * nb > 0, dot / (na * nb).clamp_min(1e-300), zero)


def gate(cos: float, weighted: bool) -> float:
    """The factor of an auxiliary gradient on the shared parameters: 1 (unweighted) or cos
    (weighted) where cos > 0, else 0."""
    if cos > 0:
        return cos if weighted else 1.0
    return 0.0


class GCS(JointTraining):
    def epoch_passes(self, sizes: dict[str, int], batch_size: int) -> int:
        # a step per target batch, each computing one batch of every task (an auxiliary
        # task with fewer batches starts over, as in run_epoch)
        steps = len(batch_sizes(sizes[self.ctx.target], batch_size))
        return sum(sum(islice(cycle(batch_sizes(n, batch_size)), steps))
                   for n in sizes.values())

    def loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss to differentiate, its value over the whole batch): the batch's mean
        loss, this rank's share of it under a launcher (as training.train_pass)."""
        task, inputs, labels, weight = batch
        if distributed.active():
            return _sharded_loss(self.ctx.model, task, inputs, labels, weight)
        loss = (task_loss(self.ctx.model(inputs, task), labels) * weight).mean()
        return loss, loss.detach()

    def run_epoch(self, epoch: EpochSpec, theta: Weights, state: dict) -> tuple[Weights, dict]:
        weighted = self.ctx.params.for_epoch(epoch.id).gcs.weighted
        model, target = self.ctx.model, self.ctx.target
        load_trainable(model, theta)
        streams, state = self.streams(epoch, state)
        opt = self.optimizer(epoch)
        own = {n: p for n, p in model.named_parameters() if p.requires_grad}
        names = {t: model.parameter_names(t) for t in streams}
        # the parameters an auxiliary task shares with the target (the trunk, and the
        # target's head too under model.heads: label) are where its gradient is gated
        # (in parameter order, so the cosine sums in the same order as before sharing existed)
        shared = {t: [n for n in names[t] if n in set(names[target])] for t in streams}
        aux = [t for t in streams if t != target]
        applied = {t: 0 for t in aux}
        cos_sum = {t: 0.0 for t in aux}
        where = f"{self.name}, seed {self.ctx.seed}, epoch {epoch.id}"
        model.train()
        steps = len(streams[target])
        for step in range(steps):
            batches = {t: streams[t][step % len(streams[t])] for t in [target] + aux}
            grads, values = {}, []
            for t, batch in batches.items():
                loss, value = self.loss(batch)
                g = torch.autograd.grad(loss, [own[n] for n in names[t]], allow_unused=True)
                # a parameter the loss does not reach gets no gradient (None), as in
                # train_pass, so the optimizer leaves it alone
                grads[t] = {n: x for n, x in zip(names[t], g) if x is not None}
                if distributed.active():
                    distributed.all_reduce_sum_(list(grads[t].values()))
                values.append(value)
            cosines = [cosine(grads[target], grads[t], shared[t]) for t in aux]
            # one read of the device per step: the losses to check and the cosines to gate on
            read = torch.stack([v.double() for v in values] + cosines).tolist()
            for t, value in zip(batches, read):
                if not math.isfinite(value):
                    raise FloatingPointError(f"{where}: loss of task {t!r} is {value} at step "
                                             f"{step}; stopping (lower train.lr?)")
            total = grads[target]
            for t, cos in zip(aux, read[len(batches):]):
                cos_sum[t] += cos
                factor = gate(cos, weighted)
                applied[t] += factor > 0
                for n, g in grads[t].items():
                    if n not in shared[t]:  # a head the target does not use: its gradient,
                        # whatever the cosine (summed where auxiliary tasks share that head)
                        total[n] = total[n] + g if n in total else g
                    elif factor > 0:
                        total[n] = total[n] + factor * g if n in total else factor * g
            opt.zero_grad(set_to_none=True)
            for n, g in total.items():
                own[n].grad = g
            opt.step()
        stats = {t: {"applied": applied[t] / steps, "mean_cosine": cos_sum[t] / steps}
                 for t in aux}
        return trainable_state(model), {**state, "gcs": stats}
