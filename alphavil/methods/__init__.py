"""The one registry of training methods, selected by name in params.yaml (`methods:`).
Adding a method is one module with a `Method` subclass, one line here and its name in
config.BASELINES (params.yaml is validated without importing torch; tests/test_config.py
checks that the two agree)."""

from __future__ import annotations

from .alphavil import AlphaVIL
from .base import Method
from .diw import DIW
from .forkmerge import ForkMerge
from .gcs import GCS
from .joint import SingleTask, UniformMTL

METHODS: dict[str, type[Method]] = {
    AlphaVIL.name: AlphaVIL,
    UniformMTL.name: UniformMTL,
    SingleTask.name: SingleTask,
    DIW.name: DIW,
    ForkMerge.name: ForkMerge,
    GCS.name: GCS,
}


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise KeyError(f"methods: unknown method {name!r}; expected one of {sorted(METHODS)}")
    return METHODS[name]
