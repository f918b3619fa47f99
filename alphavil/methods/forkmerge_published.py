"""ForkMerge as its authors' code runs it (`forkmerge.variant: published`; thuml/ForkMerge,
auxiliary_domain_image_recognition/forkmerge.py, the pruning variant of the paper's §4.2):

1. Pruning (once, in the run's first epoch, from its starting θ): one ranking branch per
   auxiliary task, trained on the target and that task sampled 1:1; the tasks are ranked
   by their branch's best dev score (ties keep the task order, as the published stable sort).
2. One branch per entry k of `forkmerge.top_k`, trained on the target and the k top-ranked
   auxiliary tasks: each step ONE batch of ONE task, drawn at random with weight 1 for the
   target and 1/k for each auxiliary task (the published SpecifiedProbMultiTaskSampler), so
   target and auxiliary batches come 1:1 in expectation; k = 0 is the target alone.
3. Every branch (ranking branches too) takes the same number of steps per fork, the
   interval's rounds of batches, in full batches cycling through each task's ρ-subset (the
   published loaders drop the last, partial batch and start over: ForeverDataIterator).
4. Each branch is scored on the target's dev split `forkmerge.checkpoints` times per fork,
   evenly spaced; its best-dev checkpoint (ties: the earliest) is what it merges.
5. The greedy merge of the published code: branches ranked by their best dev score, the
   first weighted 1, each next one λ = a·(Σ weights so far)/(its place), `a` from
   `forkmerge.lambdas`, kept where it strictly improves the merge's dev score; the weights
   are normalised and θ ← Σ_b w_b·θ_b (= θ + Σ_b w_b·δ_b).
The differences that remain from the published code are listed in docs/algorithm.md."""

from __future__ import annotations

import math

import torch

from alphavil.methods.deltas import compute_delta, merge
from alphavil.models.multitask import load_trainable, trainable_state
from alphavil.runtime.seeding import generator
from alphavil.training.loop import evaluate, task_batches, train_pass

# the published epoch_step: five epochs between merges, each ending in a dev evaluation
DEFAULT_CHECKPOINTS = 5


def default_top_k(n_aux: int) -> list[int]:
    """The published default [0, 3, 5] for its five auxiliary domains: the target alone,
    the top half (rounded up) and every auxiliary task."""
    return sorted({0, math.ceil(n_aux / 2), n_aux})


def score_key(scores: dict[str, float], metric: str) -> tuple[float, float]:
    """A dev evaluation as a sortable score: the target's metric, then the lower loss."""
    return scores.get(metric, 0.0), -scores["loss"]


def rank_tasks(scores: dict[str, tuple]) -> list[str]:
    """Auxiliary tasks by their ranking branch's best dev score, best first; ties keep the
    given order (sorted(reverse=True) is stable, as the published ranking)."""
    return sorted(scores, key=scores.__getitem__, reverse=True)


def step_tasks(target: str, aux: list[str], steps: int, g: torch.Generator) -> list[str]:
    """Each step's task: the target with weight 1, each auxiliary task with 1/k."""
    if not aux:
        return [target] * steps
    weights = torch.tensor([1.0] + [1.0 / len(aux)] * len(aux), dtype=torch.float64)
    names = [target, *aux]
    return [names[i] for i in torch.multinomial(weights, steps, replacement=True,
                                                generator=g).tolist()]


def checkpoint_steps(steps: int, count: int) -> list[int]:
    """`count` evenly spaced step counts after which a branch is scored, the last at its
    end (fewer where the branch has fewer steps)."""
    return sorted({max(1, round(steps * (j + 1) / count)) for j in range(count)})


def greedy_weights(order: list[str], score, grid: list[float]) -> dict[str, float]:
    """The published greedy search: `order` best first; `score(weights)` scores a merge."""
    lam = {name: 0.0 for name in order}
    lam[order[0]] = 1.0
    best = None  # carried from one branch's search to the next, as published
    for place, name in enumerate(order[1:], start=1):
        upper, chosen = sum(lam.values()) / place, 0.0
        for a in grid:
            lam[name] = a * upper
            s = score(normalised(lam))
            if best is None or s > best:
                best, chosen = s, lam[name]
        lam[name] = chosen
    return normalised(lam)


def normalised(lam: dict[str, float]) -> dict[str, float]:
    total = sum(lam.values())
    return {name: v / total for name, v in lam.items()}


def prunes(top_k: list[int], n_aux: int) -> bool:
    """The ranking matters only to a branch of some but not all auxiliary tasks."""
    return any(0 < k < n_aux for k in top_k)


def epoch_passes(method, sizes: dict[str, int], batch_size: int, pruning: bool) -> int:
    """Every step is one full batch: each branch takes the epoch's rounds of steps, each
    ranking branch (in the pruning epoch) the first interval's."""
    rounds = max(math.ceil(n / batch_size) for n in sizes.values())
    cfg = method.ctx.params.forkmerge
    n_aux = len(sizes) - 1
    branches = len(cfg.top_k or default_top_k(n_aux))
    first = min(cfg.interval or rounds, rounds)
    return batch_size * (rounds * branches + (first * n_aux if pruning else 0))


class Branches:
    """The published branches of one epoch of a ForkMerge method."""

    def __init__(self, method, epoch, indices: dict[str, torch.Tensor]):
        self.m, self.epoch, self.indices = method, epoch, indices
        p = method.ctx.params.for_epoch(epoch.id)
        self.batch_size, self.cfg = p.train.batch_size, p.forkmerge
        self.target = method.ctx.target
        self.dev = method.ctx.split("dev", self.target)
        self.metric = method.ctx.meta["tasks"][self.target].get("metric") or "acc"

    def batch(self, task: str, pos: int):
        """The full batch of `task` starting at example `pos` of its ρ-subset, cycling."""
        idx = self.indices[task]
        chunk = idx[torch.arange(pos, pos + self.batch_size) % len(idx)]
        return next(task_batches(task, self.m.ctx.split("train", task), chunk,
                                 self.batch_size))

    def dev_score(self, params=None) -> dict[str, float]:
        return evaluate(self.m.ctx.model, self.dev, self.target, params=params)

    def train(self, theta, aux: list[str], start: int, steps: int, optimizer,
              name: str) -> tuple[dict, dict, int]:
        """One branch from θ over `steps` steps from round `start`: its best-dev
        checkpoint, that checkpoint's dev scores and its step."""
        model = self.m.ctx.model
        load_trainable(model, theta)
        g = generator(self.m.ctx.seed, self.epoch.id, "forkmerge", start, name)
        order = step_tasks(self.target, aux, steps, g)
        cursor = {t: start * self.batch_size for t in self.indices}
        best, done = None, 0
        for mark in checkpoint_steps(steps, self.cfg.checkpoints or DEFAULT_CHECKPOINTS):
            batches = []
            for task in order[done:mark]:
                batches.append(self.batch(task, cursor[task]))
                cursor[task] += self.batch_size
            train_pass(model, batches, optimizer,
                       where=f"{self.m.name}, seed {self.m.ctx.seed}, epoch {self.epoch.id}, "
                             f"{name} branch")
            done = mark
            scores = self.dev_score()
            if best is None or score_key(scores, self.metric) > score_key(best[1], self.metric):
                best = (trainable_state(model), scores, mark)
        return best

    def rank(self, theta, steps: int) -> tuple[list[str], dict[str, dict]]:
        """The pruning phase: each auxiliary task's branch beside the target, from θ."""
        aux = [t for t in self.indices if t != self.target]
        best = {t: self.train(theta, [t], 0, steps, self.m.optimizer(self.epoch),
                              f"rank_{t}")[1] for t in aux}
        ranking = rank_tasks({t: score_key(s, self.metric) for t, s in best.items()})
        return ranking, {t: best[t] for t in ranking}


def run_epoch(method, epoch, theta, state: dict, pruning: bool):
    """One epoch of the published ForkMerge; `state` comes with the epoch's passes."""
    indices, state = method.epoch_indices(epoch, state)
    fm = Branches(method, epoch, indices)
    aux_tasks = [t for t in indices if t != fm.target]
    top_k = fm.cfg.top_k or default_top_k(len(aux_tasks))
    rounds = max(math.ceil(len(i) / fm.batch_size) for i in indices.values())
    step = fm.cfg.interval or rounds
    record = dict(state.get("forkmerge", {}))
    if pruning:
        record["ranking"], record["ranking_dev"] = fm.rank(theta, min(step, rounds))
    ranking = record.get("ranking") or aux_tasks
    names = {f"top_{k}": ranking[:k] for k in top_k}
    optimizers = {name: method.optimizer(epoch) for name in names}
    weights, merged_at, dev_losses = [], [], []
    param_names = list(theta)
    for start in range(0, rounds, step):
        steps = min(step, rounds - start)
        deltas, best = {}, {}
        for name, aux in names.items():
            state_b, scores, mark = fm.train(theta, aux, start, steps, optimizers[name], name)
            deltas[name] = compute_delta(theta, state_b, param_names, torch.float64)
            best[name] = (score_key(scores, fm.metric), mark)

        def merged(w: dict[str, float]):
            return merge(theta, [(w[n], deltas[n]) for n in names])

        order = rank_tasks({n: best[n][0] for n in names})
        w = greedy_weights(order, lambda w: score_key(fm.dev_score(merged(w)), fm.metric),
                           [float(a) for a in fm.cfg.lambdas])
        theta = merged(w)
        weights.append(w)
        merged_at.append({n: best[n][1] for n in names})
        dev_losses.append(fm.dev_score(theta)["loss"])
    load_trainable(method.ctx.model, theta)
    record.update(weights=weights, checkpoint_step=merged_at, dev_loss=dev_losses)
    return theta, {**state, "forkmerge": record}
