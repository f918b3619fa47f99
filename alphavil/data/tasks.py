"""The registries of what a vision task is: how its label is read off a prepared example
(`label:`), which images it sees (`inputs:`), and its ground-truth role (`role:`).

A task in params.yaml names a kind (`label:`); adding a kind is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class TaskLabel:
    num_classes: int
    # (left digit classes, right digit classes) -> labels
    fn: Callable[[np.ndarray, np.ndarray], np.ndarray]
    doc: str


TASK_LABELS: dict[str, TaskLabel] = {
    "left": TaskLabel(10, lambda left, right: left, "class of the top-left digit"),
    "right": TaskLabel(10, lambda left, right: right, "class of the bottom-right digit"),
    "left_parity": TaskLabel(2, lambda left, right: left % 2, "is the top-left digit odd"),
    "right_parity": TaskLabel(2, lambda left, right: right % 2, "is the bottom-right digit odd"),
    "sum_mod10": TaskLabel(10, lambda left, right: (left + right) % 10,
                           "sum of both digits modulo 10"),
}


# Which images a task sees (alphavil/data.py builds them; the label kind reads the classes
# of whatever was composed). Dev and test of a task see the same kind of images as its train.
TASK_INPUTS: dict[str, str] = {
    "shared": "the split's composed images, shared by every task (no copy)",
    "permuted": "the shared images under a fixed random pixel permutation, one per task "
                "(seeded by data.seed and the task name): the same labels, scrambled inputs",
    "fashion": "two Fashion-MNIST items per image (Debian's dataset-fashion-mnist, "
               "`make install-fashion`), composed like the digits; labels read their classes",
}

# Ground truth of a suite's construction (configs/suite-*.yaml): what an auxiliary task is
# built to do to the target. Only the metrics read it (report/stats.py ranking_score).
ROLES = ("helpful", "unrelated", "harmful")


def make_labels(kind: str, left: np.ndarray, right: np.ndarray, noise: float,
                rng: np.random.Generator) -> np.ndarray:
    """Labels of one task; a `noise` fraction is replaced by uniformly drawn classes."""
    spec = TASK_LABELS[kind]
    labels = spec.fn(left, right).astype(np.int64)
    if noise > 0:
        n = len(labels)
        flip = rng.permutation(n)[: int(round(noise * n))]
        labels = labels.copy()
        labels[flip] = rng.integers(0, spec.num_classes, size=len(flip))
    return labels
