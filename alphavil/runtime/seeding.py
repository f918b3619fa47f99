"""Deterministic seeds derived from (seed, epoch, task, purpose), stable across processes."""

from __future__ import annotations

import hashlib
import zlib
import os

import numpy as np
import torch

from alphavil.config import ParamsError


def derive_seed(*parts: object) -> int:
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts: object) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(derive_seed(*parts))
    return g


def configure_threads() -> int:
    """One intra-op thread unless ALPHAVIL_THREADS says otherwise. On a 2-core machine
    shared with other work, two threads made an epoch up to 20× slower (OpenMP workers
    wait on a descheduled sibling) for at best 1.5× when the machine was idle
    (docs/performance.md). A fixed count also keeps results byte-identical across
    machines with different core counts."""
    raw = os.environ.get("ALPHAVIL_THREADS", "1")
    if not raw.isdigit() or int(raw) < 1:
        raise ParamsError(f"ALPHAVIL_THREADS: expected a positive integer, got {raw!r}")
    n = int(raw)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def set_determinism(seed: int) -> None:
    # torch.use_deterministic_algorithms is not called: on CPU the ops used here are
    # already deterministic for a fixed thread count (tests compare dvc.lock hashes), and
    # the call imports torch's compiler stack, ~1.7 s of start-up in every stage.
    configure_threads()
    torch.manual_seed(seed)


def task_rng(data_seed: int, task: str, *stream: int) -> np.random.Generator:
    return np.random.default_rng([data_seed, zlib.crc32(task.encode()), *stream])
