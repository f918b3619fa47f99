"""Compute budgets: how many forward+backward example passes an epoch spends.

`budget.match: epochs` (default) gives every baseline one pass over each task's ρ-subset per
epoch, as αVIL's fine-tunes. `compute` gives each baseline epoch as many example passes as
αVIL plans for the same epoch: every task's fine-tune on its ρ-subset plus the α-estimation
steps on the target's dev split (each a forward and backward pass of its examples). The
baseline then draws further ρ-subsets of each task, in proportion, until it has spent that
budget. Forward-only work (dev evaluations, DIW's features, ForkMerge's λ search) is not
counted for any method. αVIL's planned budget counts every task's fine-tune, also once a
task's weight is 0 and its fine-tune is skipped: a baseline never gets less than αVIL spent.
"""

from __future__ import annotations

from itertools import cycle, islice
from typing import Callable

import torch

from alphavil.runtime.seeding import generator
from alphavil.training.loop import sample_indices, sample_size


def batch_sizes(n: int, batch_size: int) -> list[int]:
    """The sizes of the minibatches of one pass over n examples."""
    return [min(batch_size, n - start) for start in range(0, n, batch_size)]


def scheduled_passes(batches: list[list[int]], schedule: str) -> int:
    """Example passes of a joint epoch over streams of these batch sizes under
    `joint.schedule`: each batch once (round_robin, spread), or as many steps as the longest
    stream, each taking the next batch of every stream, a shorter one starting over
    (each_step)."""
    if schedule != "each_step":
        return sum(map(sum, batches))
    steps = max(map(len, batches), default=0)
    return sum(sum(islice(cycle(b), steps)) for b in batches if b)


def alphavil_passes(train_sizes: dict[str, int], ratio: float, dev_size: int,
                    alpha_steps: int, alpha_batch_size: int) -> int:
    """αVIL's planned example passes in one epoch: each task's ρ-subset once, and α's steps,
    each on the next minibatch of shuffled passes over the target's dev split."""
    finetunes = sum(sample_size(n, ratio) for n in train_sizes.values())
    dev = sum(islice(cycle(batch_sizes(dev_size, alpha_batch_size)), alpha_steps))
    return finetunes + dev


def stretch(indices: dict[str, torch.Tensor], factor: float, sizes: dict[str, int],
            ratio: float, seed: int, epoch_id: str) -> dict[str, torch.Tensor]:
    """Each task's indices lengthened (or shortened) to round(factor × their length):
    the epoch's own ρ-subset first, then fresh ρ-subsets drawn with their own seeds, so an
    epoch at factor 1 is exactly the epoch-matched one."""
    out = {}
    for task, idx in indices.items():
        want = max(1, round(factor * len(idx)))
        parts, have, i = [idx], len(idx), 1
        while have < want:
            extra = sample_indices(sizes[task], ratio,
                                   generator(seed, epoch_id, task, "sample", "budget", i))
            parts.append(extra)
            have += len(extra)
            i += 1
        out[task] = torch.cat(parts)[:want]
    return out


def seen_once(first: torch.Tensor, stretched: torch.Tensor) -> torch.Tensor:
    """The distinct examples of a stretched epoch: its own ρ-subset `first` in its order,
    then those only the extra subsets drew (none at ρ = 1, so nothing changes there)."""
    extra = stretched[~torch.isin(stretched, first)].unique()
    return torch.cat([first, extra])


def scaled(lengths: dict[str, int], factor: float) -> dict[str, int]:
    """Each task's example count at `factor`, as `stretch` makes it."""
    return {t: max(1, round(factor * n)) for t, n in lengths.items()}


def fit_factor(budget: int, lengths: dict[str, int],
               passes: Callable[[dict[str, int]], int]) -> float:
    """The stretch factor whose epoch spends the passes closest to `budget`. Passes are
    not proportional to the factor for every method (GCS: each step takes a whole batch of
    every auxiliary task, however few target examples are left), so the factor is searched
    on the method's own count: bisection for the first factor that reaches the budget,
    then whichever of it and the factor just below is closer (ties: the larger)."""
    if passes(lengths) <= 0:
        raise ValueError("an epoch with no example passes cannot be stretched")
    lo, hi = 0.0, 2.0 * budget / passes(lengths) + 1.0
    for _ in range(60):  # the count changes in whole examples: 60 halvings settle it
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if passes(scaled(lengths, mid)) < budget else (lo, mid)
    above, below = passes(scaled(lengths, hi)), passes(scaled(lengths, lo))
    return hi if above - budget <= budget - below else lo
