"""The training methods, selected by name in params.yaml (`baselines:`; αVIL always runs).
Adding a method is one module with a `Method` subclass and one line in
alphavil/registry.py METHODS (its name there is what params.yaml says)."""

from __future__ import annotations

from alphavil import registry
from alphavil.methods.base import Method

METHODS: dict[str, type[Method]] = {name: registry.load(target)
                                    for name, target in registry.METHODS.items()}


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise KeyError(f"methods: unknown method {name!r}; expected one of {sorted(METHODS)}")
    return METHODS[name]
