"""Deterministic seeds derived from (seed, epoch, task, purpose), stable across processes."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: object) -> int:
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts: object) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(derive_seed(*parts))
    return g


def set_determinism(seed: int) -> None:
    # torch.use_deterministic_algorithms is not called: on CPU the ops used here are
    # already deterministic for a fixed thread count (tests compare dvc.lock hashes), and
    # the call imports torch's compiler stack, ~1.7 s of start-up in every stage.
    torch.manual_seed(seed)
