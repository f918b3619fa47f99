"""Where a stage process's wall time goes: start-up (interpreter, imports, params, CUDA
initialisation, model) against the stage's own work. Off unless ALPHAVIL_TIMING names a
file, to which cli.run appends one JSON line per stage process (benchmarks/gpu_check.py
reads them from a `dvc repro` run).
"""

from __future__ import annotations

import json
import os
import sys
import time

# modules whose presence in a stage process means start-up seconds spent on something
# the stage does not need (the compiler stack, the NLU encoder library)
HEAVY = ("torch._dynamo", "torch._inductor", "transformers")

_marks: dict[str, float] = {}


def mark(name: str) -> None:
    """Remember when `name` first happened in this process."""
    _marks.setdefault(name, time.time())


def add(name: str, seconds: float) -> None:
    """Count start-up seconds spent after the model is ready (a lazy import)."""
    _marks[name] = _marks.get(name, 0.0) + seconds


def process_start() -> float | None:
    """When this process started (epoch seconds, 10 ms resolution), from /proc: the
    interpreter's own start-up happens before any Python code could take the time."""
    try:
        with open("/proc/self/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of the file, starttime, after pid and comm
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
        return time.time() - (since_boot - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def report(status: str) -> None:
    path = os.environ.get("ALPHAVIL_TIMING")
    if not path:
        return
    from alphavil.runtime import device

    record = {"argv": sys.argv, "status": status, "start": process_start(),
              **_marks, "end": time.time(), "cuda_init": device.cuda_init_seconds,
              "heavy_modules": [m for m in HEAVY if m in sys.modules]}
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
