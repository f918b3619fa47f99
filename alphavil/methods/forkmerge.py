"""ForkMerge (Jiang et al., NeurIPS 2023, "ForkMerge: Mitigating Negative Transfer in
Auxiliary-Task Learning"). `forkmerge.variant: published` runs the authors' code's pruning,
top-k branches and greedy merge (forkmerge_published.py); the default, two_branch: every
`forkmerge.interval` rounds of batches (default: once per epoch) θ is forked into a
target-only branch and a joint branch (target plus every auxiliary task, equal weights),
each trains on the same interval of the epoch's batches, and θ becomes
θ + (1 − λ)·δ_target + λ·δ_joint, with λ the value of `forkmerge.lambdas` whose merge scores
best on the target's dev split (the paper's search).
How it differs from αVIL: docs/algorithm.md.

joint.schedule orders the joint branch's batches within each interval as it orders uniform
MTL's epoch (methods/joint.py; under each_step a shorter task starts over within the
interval). The intervals stay rounds of each task's own batches, and the target-only branch
takes the target's batches of the interval once each, whatever the schedule."""

from __future__ import annotations

import torch

from alphavil.config import EpochSpec
from alphavil.training import budget
from alphavil.methods.deltas import compute_delta, merge
from alphavil.models.multitask import load_trainable, trainable_state
from alphavil.training.loop import evaluate, train_pass
from alphavil.methods.base import Weights
from alphavil.methods.joint import SCHEDULES, JointTraining
from alphavil.methods import forkmerge_published as published


def pick_lambda(scores: dict[float, dict[str, float]], metric: str) -> float:
    """The λ with the best dev `metric` (the paper selects on validation performance);
    a tie, common on a small dev split, goes to the lower dev loss, then to the first λ."""
    return max(scores, key=lambda lam: (scores[lam].get(metric, 0.0), -scores[lam]["loss"]))


class ForkMerge(JointTraining):
    # whether this epoch runs the published variant's pruning (set by run_epoch, read by
    # epoch_passes, which counts the ranking branches' passes in that epoch)
    pruning = False

    @property
    def published(self) -> bool:
        return self.ctx.params.forkmerge.variant == "published"

    def epoch_passes(self, sizes: dict[str, int], batch_size: int) -> int:
        if self.published:
            return published.epoch_passes(self, sizes, batch_size, self.pruning)
        # the target-only branch trains on the target's batches, the joint one on every
        # task's, interval by interval under joint.schedule (as run_epoch)
        batches = [budget.batch_sizes(n, batch_size) for n in sizes.values()]
        rounds = max(map(len, batches))
        step = self.ctx.params.forkmerge.interval or rounds
        return sizes[self.ctx.target] + sum(
            budget.scheduled_passes([b[start:start + step] for b in batches], self.schedule)
            for start in range(0, rounds, step))

    def run_epoch(self, epoch: EpochSpec, theta: Weights, state: dict) -> tuple[Weights, dict]:
        cfg = self.ctx.params.for_epoch(epoch.id).forkmerge
        if self.published:
            n_aux = len(self.epoch_tasks()) - 1
            self.pruning = ("ranking" not in state.get("forkmerge", {})
                            and published.prunes(cfg.top_k or published.default_top_k(n_aux),
                                                 n_aux))
            return published.run_epoch(self, epoch, theta, state, self.pruning)
        interval, lambdas = cfg.interval, [float(v) for v in cfg.lambdas]
        model, target = self.ctx.model, self.ctx.target
        dev = self.ctx.target_dev("select")  # λ is a choice among models (alpha.split)
        metric = self.ctx.meta["tasks"][target].get("metric") or "acc"
        load_trainable(model, theta)
        streams, state = self.streams(epoch, state)
        rounds = max(map(len, streams.values()))
        step = interval or rounds
        # each branch keeps its own optimizer through the epoch (fresh per epoch, as every
        # method here); forking replaces only the parameters, in place
        optimizers = {"target": self.optimizer(epoch), "joint": self.optimizer(epoch)}
        names = list(theta)
        chosen, dev_losses = [], []
        for start in range(0, rounds, step):
            part = {t: s[start:start + step] for t, s in streams.items()}
            batches = {"target": part[target],
                       "joint": SCHEDULES[self.schedule](list(part.values()))}
            deltas = {}
            for branch in ("target", "joint"):  # the target branch first, as single_task
                load_trainable(model, theta)
                train_pass(model, batches[branch], optimizers[branch],
                           where=f"{self.name}, seed {self.ctx.seed}, epoch {epoch.id}, "
                                 f"{branch} branch")
                # float64: θ + 1·δ reproduces the branch bit for bit (λ at 0 or 1)
                deltas[branch] = compute_delta(theta, trainable_state(model), names,
                                               torch.float64)
            def merged(lam: float) -> Weights:
                return merge(theta, [(1.0 - lam, deltas["target"]), (lam, deltas["joint"])])

            scores = {lam: evaluate(model, dev, target, params=merged(lam)) for lam in lambdas}
            lam = pick_lambda(scores, metric)
            theta = merged(lam)
            chosen.append(lam)
            dev_losses.append(scores[lam]["loss"])
        load_trainable(model, theta)
        return theta, {**state, "forkmerge": {"lambda": chosen, "dev_loss": dev_losses}}
