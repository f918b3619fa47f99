"""The one registry of task kinds: how a task's label is read off a prepared example.

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
