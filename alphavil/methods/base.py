"""The interface every training method implements (after LibMTL's weighting classes)."""

from __future__ import annotations

from typing import ClassVar

import torch

from ..config import EpochSpec
from ..context import RunContext

Params = dict[str, torch.Tensor]


class Method:
    """One epoch of training from θ. `state` is JSON-able and travels with checkpoints
    (task weights for αVIL, importance-weight statistics for DIW, ...)."""

    name: ClassVar[str]
    # True for αVIL: the pipeline runs its epoch as separate, cached DVC stages
    # (fine-tune per task, α estimation, merge) instead of one `train_method` stage.
    staged: ClassVar[bool] = False

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    def initial_state(self) -> dict:
        return {}

    def run_epoch(self, epoch: EpochSpec, theta: Params, state: dict) -> tuple[Params, dict]:
        raise NotImplementedError
