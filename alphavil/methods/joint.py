"""Joint training on a mix of tasks with one optimizer: the shared loop of the baselines.

`joint.schedule` says how an epoch's task streams become optimizer steps (SCHEDULES):
- each_step (default, as LibMTL): every step takes one batch of every task and sums their
  losses; the epoch lasts as many steps as the longest stream, a shorter one starting over
  from its first batch. Every task, the target included, is in every step.
- spread: each batch once, one per step, each stream's batches placed by their fractional
  position in it, so a small target is seen throughout the epoch.
- round_robin: each batch once, one per step, a batch of each task in turn until every
  stream is used up. The old behaviour: a target of 10 batches beside auxiliary tasks of
  hundreds is all seen in the first steps of the epoch.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import torch

from alphavil.training import budget
from alphavil.config import EpochSpec, Params, ParamsError
from alphavil.models.multitask import load_trainable, trainable_state
from alphavil.runtime.seeding import generator
from alphavil.runtime.steplog import step_logger
from alphavil.training.loop import Batch, make_optimizer, sample_indices, task_batches, train_pass
from alphavil.methods.base import Method, Weights
from alphavil.training.context import RunContext


def round_robin(streams: list[list[Batch]]) -> list[Batch]:
    """Alternate between tasks one batch at a time until every stream is used up."""
    out: list[Batch] = []
    for i in range(max((len(s) for s in streams), default=0)):
        out.extend(s[i] for s in streams if i < len(s))
    return out


def spread(streams: list[list[Batch]]) -> list[Batch]:
    """Every batch once, ordered by its midpoint position (i + ½) / len in its stream (ties:
    stream order). Streams of equal length come out exactly as round_robin."""
    keyed = [(Fraction(2 * i + 1, 2 * len(s)), k, i)
             for k, s in enumerate(streams) for i in range(len(s))]
    return [streams[k][i] for _, k, i in sorted(keyed)]


def each_step(streams: list[list[Batch]]) -> list[list[Batch]]:
    """As many steps as the longest stream, each a batch of every (non-empty) stream; a
    shorter stream starts over from its first batch."""
    live = [s for s in streams if s]
    return [[s[i % len(s)] for s in live] for i in range(max(map(len, live), default=0))]


# joint.schedule -> the epoch's steps: a batch, or a list of batches whose losses are summed
SCHEDULES = {"each_step": each_step, "spread": spread, "round_robin": round_robin}


def warm_up(ctx: RunContext, seed: int, steps: int, log_dir: Path) -> None:
    """base.warmup_steps: uniform multitask steps on θ_0 before epoch 1, so every method
    starts from the same warmed-up point: each task's training set shuffled by its own
    seeded stream, the batches taken round-robin and cut at `steps`, one optimizer.
    Round-robin whatever joint.schedule says: the warmed-up θ_0 is every method's start,
    αVIL's too, so it must not depend on a baseline's param (train_base does not read it)."""
    if not steps:
        return
    t = ctx.params.train
    streams = []
    for task in ctx.tasks:
        split = ctx.split("train", task)
        idx = torch.randperm(len(split), generator=generator(seed, "warmup", task))
        streams.append(list(task_batches(task, split, idx, t.batch_size)))
    batches = round_robin(streams)[:steps]
    opt = make_optimizer(t.optimizer, [p for p in ctx.model.parameters() if p.requires_grad],
                         t.lr)
    with step_logger(log_dir, len(batches), f"warm-up s{seed}") as on_step:
        train_pass(ctx.model, batches, opt, where=f"seed {seed}, warm-up", on_step=on_step)

class JointTraining(Method):
    """Each epoch: the same ρ-subset of each task that αVIL's fine-tunes see (same seeds),
    in steps by joint.schedule, one optimizer over all parameters, per-example loss weights
    from `example_weights` (they travel with each batch, also a repeated one)."""

    def epoch_tasks(self) -> list[str]:
        return self.ctx.tasks

    def example_weights(self, epoch: EpochSpec, task: str, idx: torch.Tensor,
                        state: dict) -> float | torch.Tensor:
        """A scalar, or a tensor over the task's whole training split (read at `idx`)."""
        return 1.0

    def epoch_passes(self, sizes: dict[str, int], batch_size: int) -> int:
        """Forward+backward example passes of an epoch over `sizes` examples per task under
        joint.schedule (methods that train several branches or gradients count each)."""
        return budget.scheduled_passes([budget.batch_sizes(n, batch_size)
                                        for n in sizes.values()], self.schedule)

    @property
    def schedule(self) -> str:
        return self.ctx.params.joint.schedule

    def before_epoch(self, epoch: EpochSpec, state: dict,
                     indices: dict[str, torch.Tensor]) -> dict:
        return state

    def streams(self, epoch: EpochSpec, state: dict) -> tuple[dict[str, list[Batch]], dict]:
        """Each task's batches of this epoch (its ρ-subset, drawn with αVIL's seeds), and the
        state `before_epoch` returns. The model must hold the epoch's starting θ."""
        p = self.ctx.params.for_epoch(epoch.id)
        indices, state = self.epoch_indices(epoch, state)
        return {task: list(task_batches(task, self.ctx.split("train", task), idx,
                                        p.train.batch_size,
                                        self.example_weights(epoch, task, idx, state)))
                for task, idx in indices.items()}, state

    def epoch_indices(self, epoch: EpochSpec,
                      state: dict) -> tuple[dict[str, torch.Tensor], dict]:
        """Each task's example indices of this epoch, in order (`streams` batches them), and
        the state with the epoch's `passes`."""
        p = self.ctx.params.for_epoch(epoch.id)
        indices = {task: sample_indices(len(self.ctx.split("train", task)),
                                        p.alphavil.sample_ratio,
                                        generator(self.ctx.seed, epoch.id, task, "sample"))
                   for task in self.epoch_tasks()}
        seen = indices
        if p.budget.match == "compute":
            indices = self.compute_matched(epoch, p, indices)
            seen = {t: budget.seen_once(seen[t], i) for t, i in indices.items()}
        # before_epoch sees every example the epoch trains on, once (DIW weights each one)
        state = self.before_epoch(epoch, state, seen)
        # what the epoch spends, to compare methods' compute (alphavil/budget.py)
        state = {**state, "passes": self.epoch_passes(
            {t: len(i) for t, i in indices.items()}, p.train.batch_size)}
        return indices, state

    def compute_matched(self, epoch: EpochSpec, p: Params,
                        indices: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The epoch's indices stretched to αVIL's planned example passes for this epoch."""
        sizes = {t: len(self.ctx.split("train", t)) for t in self.ctx.tasks}
        ratio = p.alphavil.sample_ratio
        if p.alpha.fit != "budget":  # refused before this baseline trains a step
            raise ParamsError("alpha.fit: expected 'budget' with budget.match 'compute' (the "
                              "compute-matched baselines are planned from alpha.steps x "
                              f"alpha.batch_size, which a converged fit does not follow), "
                              f"got {p.alpha.fit!r}")
        planned = budget.alphavil_passes(
            sizes, ratio, len(self.ctx.target_dev("fit")),
            p.alpha.steps, p.alpha.batch_size)
        factor = budget.fit_factor(planned, {t: len(i) for t, i in indices.items()},
                                   lambda n: self.epoch_passes(n, p.train.batch_size))
        return budget.stretch(indices, factor, sizes, ratio, self.ctx.seed, epoch.id)

    def optimizer(self, epoch: EpochSpec):
        """A fresh optimizer over every trainable parameter, at the epoch's learning rate."""
        t = self.ctx.params.for_epoch(epoch.id).train
        return make_optimizer(t.optimizer, [q for q in self.ctx.model.parameters()
                                            if q.requires_grad], t.lr)

    def run_epoch(self, epoch: EpochSpec, theta: Weights, state: dict) -> tuple[Weights, dict]:
        model = self.ctx.model
        load_trainable(model, theta)
        streams, state = self.streams(epoch, state)
        steps = SCHEDULES[self.schedule](list(streams.values()))
        train_pass(model, steps, self.optimizer(epoch),
                   where=f"{self.name}, seed {self.ctx.seed}, epoch {epoch.id}")
        return trainable_state(model), state


class UniformMTL(JointTraining):
    """Standard multitask training: every task, equal weights."""


class SingleTask(JointTraining):
    """The target task alone (one stream: every joint.schedule is the same)."""

    def epoch_tasks(self) -> list[str]:
        return [self.ctx.target]
