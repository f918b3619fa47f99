"""αVIL (Kourdis, Gordon-Hall & Gorinski 2024): per-task deltas, α fitted on the target's
dev loss, α-weighted merge, task weights updated from α."""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from alphavil.config import EpochSpec
from alphavil.methods.deltas import (combine, combine_scale, delta_dtype, delta_norm,
                                     estimate_alpha, finetune_steps, finetune_task, guard_record,
                                     merge, merge_accepted, scale_delta, theta_device,
                                     update_weights)
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
        # the merge weighs every estimated task by the same factor (alpha.combine)
        scale = combine_scale(a.combine, len(tasks))
        where = f"seed {self.ctx.seed}, epoch {epoch.id}, α estimation"
        if a.order == "target_first" and tasks:
            alphas, trace = self._target_first(epoch, theta, deltas, tasks, scale, where)
        else:
            alphas, trace = self._fit(epoch, theta, [deltas[t] for t in tasks], a.init,
                                      scale, where, a.guard, steps=a.steps if tasks else 0)
        fitted = dict(zip(tasks, alphas))
        if a.split != "dev":  # which dev examples the fit read (absent by default)
            trace["dev_split"] = {"split": a.split, "examples": len(self.ctx.target_dev("fit"))}
        return {t: fitted.get(t) for t in deltas}, trace

    def _fit(self, epoch: EpochSpec, theta: Weights, deltas: list[Weights], init: float,
             scale: float, where: str, guard: bool, *stream: str, steps: int) -> tuple[list, dict]:
        a = self.ctx.params.for_epoch(epoch.id).alpha
        return estimate_alpha(
            self.ctx.model, theta, deltas, self.ctx.target_dev("fit"),
            self.ctx.target, init=init, steps=steps, lr=a.lr, optimizer=a.optimizer,
            batch_size=a.batch_size, g=generator(self.ctx.seed, epoch.id, "alpha", *stream),
            where=where, guard=guard, scale=scale, fit=a.fit, tol=a.tol,
            max_iter=a.max_iter, record_fit=a.fit != "budget")

    def _target_first(self, epoch: EpochSpec, theta: Weights, deltas: dict[str, Weights],
                      tasks: list[str], scale: float, where: str) -> tuple[list, dict]:
        """alpha.order target_first (not in the paper): the target's own α on its delta
        alone, then the auxiliary α from 0 on θ + α_t δ_t, so an auxiliary task is credited
        only with what it adds to the target's own fine-tune. alpha.normalise scales each
        auxiliary delta to the target delta's norm for its fit; α is recorded in the raw
        delta's units (what the merge and the weight rule use)."""
        a = self.ctx.params.for_epoch(epoch.id).alpha
        target = self.ctx.target
        aux = [t for t in tasks if t != target]
        fitted: dict[str, float] = {}
        stages: dict[str, dict] = {}
        base = theta
        if target in tasks:
            (fitted[target],), stages["target"] = self._fit(
                epoch, theta, [deltas[target]], a.init, scale, where, False, steps=a.steps)
            base = combine(theta, [deltas[target]],
                           torch.tensor([fitted[target] * scale], device=theta_device(theta)))
        factors = {t: 1.0 for t in aux}
        if a.normalise and target in tasks:
            own = delta_norm(deltas[target])
            factors = {t: own / n if (n := delta_norm(deltas[t])) > 0 else 1.0 for t in aux}
        if aux:
            found, stages["auxiliary"] = self._fit(
                epoch, base, [scale_delta(deltas[t], factors[t]) for t in aux], 0.0, scale,
                where, False, "auxiliary", steps=a.steps)
            fitted.update({t: v * factors[t] for t, v in zip(aux, found)})
        alphas = [fitted[t] for t in tasks]
        first = stages.get("target", stages.get("auxiliary", {}))
        trace = {"dev_loss_at_init": first.get("dev_loss_at_init"),
                 "step_losses": [v for s in stages.values() for v in s["step_losses"]],
                 "order": {"target_first": stages, "normalise_factors": factors}}
        if a.guard:
            trace["guard"] = guard_record(
                self.ctx.model, theta, [deltas[t] for t in tasks], torch.tensor(alphas, device=theta_device(theta)),
                self.ctx.target_dev("fit"), target, a.batch_size, scale, where)
        return alphas, trace

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
