"""The interface every training method implements (after LibMTL's weighting classes)."""

from __future__ import annotations

from typing import ClassVar

from alphavil import registry
from alphavil.config import EpochSpec
from alphavil.methods.deltas import Weights
from alphavil.training.context import RunContext


class Method:
    """One epoch of training from θ. `state` is JSON-able and travels with checkpoints
    (task weights for αVIL, importance-weight statistics for DIW, ...)."""

    # True for αVIL: the pipeline runs its epoch as separate, cached DVC stages
    # (fine-tune per task, α estimation, merge) instead of one `train_method` stage.
    staged: ClassVar[bool] = False

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    @property
    def name(self) -> str:
        """The method's name in params.yaml (alphavil/registry.py METHODS; a subclass of a
        registered method goes by that method's name)."""
        names = {target: n for n, target in registry.METHODS.items()}
        return next(names[own] for own in (f"{c.__module__}:{c.__qualname__}"
                                           for c in type(self).__mro__) if own in names)

    def initial_state(self) -> dict:
        return {}

    def run_epoch(self, epoch: EpochSpec, theta: Weights, state: dict) -> tuple[Weights, dict]:
        raise NotImplementedError
