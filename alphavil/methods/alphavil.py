"""αVIL (Kourdis, Gordon-Hall & Gorinski 2024): per-task deltas, α fitted on the target's
dev loss, α-weighted merge, task weights updated from α."""

from __future__ import annotations

from typing import Callable, Iterable

from alphavil.config import EpochSpec
from alphavil.methods.deltas import (combine_scale, delta_dtype, estimate_alpha, finetune_steps,
                                     finetune_task, merge, merge_accepted, update_weights)
from alphavil.runtime.seeding import generator
from alphavil.training.loop import PassStats
from alphavil.methods.base import Method, Weights


class AlphaVIL(Method):
    staged = True

    def initial_state(self) -> dict:
        return {"weights": {t: 1.0 for t in self.ctx.tasks}}

    def _pass(self, epoch: EpochSpec, state: dict, task: str) -> dict:
        """What decides a fine-tune's length: the task's weight, ρ and the batch size."""
        p = self.ctx.params.for_epoch(epoch.id)
        return {"weight": float(state["weights"][task]),
                "ratio": p.alphavil.sample_ratio, "batch_size": p.train.batch_size}

    def finetune_steps(self, epoch: EpochSpec, state: dict, task: str) -> int:
        return finetune_steps(len(self.ctx.split("train", task)),
                              **self._pass(epoch, state, task))

    def finetune(self, epoch: EpochSpec, theta: Weights, state: dict, task: str,
                 on_step: Callable[[int, float], None] | None = None) -> tuple[Weights, PassStats]:
        p = self.ctx.params.for_epoch(epoch.id)
        return finetune_task(
            self.ctx.model, theta, self.ctx.split("train", task), task,
            **self._pass(epoch, state, task), optimizer=p.train.optimizer,
            lr=p.train.lr, g=generator(self.ctx.seed, epoch.id, task, "sample"),
            where=f"seed {self.ctx.seed}, epoch {epoch.id}, fine-tune of task {task!r}",
            delta_dtype=delta_dtype(p.alphavil.delta_dtype),
            weight_mode=p.alphavil.weight_mode, on_step=on_step)

    def active_tasks(self, epoch: EpochSpec, state: dict) -> list[str]:
        """The tasks whose fine-tune trains this epoch. A task at weight 0 took no step, so
        its δ is 0 and says nothing about it: its α is not estimated (recorded as null)
        and its weight stays where it is, whatever the weight rule or alpha.init."""
        return [t for t in self.ctx.tasks if self.finetune_steps(epoch, state, t) > 0]

    def estimate(self, epoch: EpochSpec, theta: Weights, deltas: dict[str, Weights],
                 state: dict) -> tuple[dict[str, float | None], dict]:
        a = self.ctx.params.for_epoch(epoch.id).alpha
        tasks = [t for t in self.active_tasks(epoch, state) if t in deltas]
        alphas, trace = estimate_alpha(
            self.ctx.model, theta, [deltas[t] for t in tasks],
            self.ctx.split("dev", self.ctx.target), self.ctx.target,
            init=a.init, steps=a.steps if tasks else 0, lr=a.lr, optimizer=a.optimizer,
            batch_size=a.batch_size, g=generator(self.ctx.seed, epoch.id, "alpha"),
            where=f"seed {self.ctx.seed}, epoch {epoch.id}, α estimation",
            guard=a.guard, scale=combine_scale(a.combine, len(tasks)))
        fitted = dict(zip(tasks, alphas))
        return {t: fitted.get(t) for t in deltas}, trace

    def merge(self, theta: Weights, alphas: dict[str, float | None],
              deltas: Iterable[tuple[str, Weights]], accepted: bool = True) -> Weights:
        if not accepted:  # alpha.guard: the merge was worse than θ on the target's dev set
            return dict(theta)
        # a task whose α was not estimated took no step: its δ is 0 and adds nothing; the
        # estimated ones are the K deltas α was fitted over (alpha.combine: mean weighs by 1/K)
        scale = combine_scale(self.ctx.params.alpha.combine,
                              sum(a is not None for a in alphas.values()))
        return merge(theta, ((scale * alphas[t], d) for t, d in deltas if alphas[t] is not None))

    def next_state(self, epoch: EpochSpec, state: dict, alphas: dict[str, float],
                   accepted: bool = True) -> dict:
        if not accepted:
            # the next epoch retries from the same θ and weights, with fresh samples
            return {"weights": dict(state["weights"]), "alpha": alphas, "merge_rejected": True}
        av = self.ctx.params.for_epoch(epoch.id).alphavil
        weights = update_weights(state["weights"], alphas, av.weight_rule, av.weight_floor)
        return {"weights": weights, "alpha": alphas}

    def run_epoch(self, epoch: EpochSpec, theta: Weights, state: dict) -> tuple[Weights, dict]:
        """The whole epoch in one process (tests, benchmarks); the DVC pipeline runs the
        same three steps as separate stages."""
        deltas = {t: self.finetune(epoch, theta, state, t)[0] for t in self.ctx.tasks}
        alphas, trace = self.estimate(epoch, theta, deltas, state)
        ok = merge_accepted(trace)
        return (self.merge(theta, alphas, deltas.items(), ok),
                self.next_state(epoch, state, alphas, ok))
