"""Step-level training logs (dvclive) and progress bars (tqdm) for long stage work.

Logs go under logs/, which is not a tracked output: they are for looking at a run, and
keeping them out of the DVC graph keeps every tracked artifact byte-reproducible.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from tqdm import tqdm

from alphavil.runtime import stagetime


def _quiet() -> bool:
    from alphavil.runtime import distributed

    return os.environ.get("ALPHAVIL_QUIET") == "1" or not distributed.is_main()


@contextmanager
def step_logger(log_dir: Path, total: int | None, desc: str) -> Iterator[Callable[[int, float], None]]:
    """Yield on_step(step, loss): logs the loss with dvclive and advances a progress bar."""
    from alphavil.runtime import distributed

    if not distributed.is_main():  # one log per stage, written by rank 0
        yield lambda step, loss: None
        return
    t = time.perf_counter()
    from dvclive import Live

    stagetime.add("logger_import", time.perf_counter() - t)  # start-up, not training
    bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr, leave=False,
               disable=_quiet(), dynamic_ncols=True)
    with Live(dir=str(log_dir), dvcyaml=False, save_dvc_exp=False) as live:
        def on_step(step: int, loss: float) -> None:
            # Setting the step instead of live.next_step(): next_step re-reads every
            # metric file, rewrites the summary and fsyncs a marker on each call (O(steps²),
            # ms per step in a DVC repo); Live's exit writes the summary once.
            live.step = step - 1
            live.log_metric("train/loss", loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

        try:
            yield on_step
        finally:
            bar.close()


def progress(iterable, desc: str, total: int | None = None):
    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, leave=False,
                disable=_quiet(), dynamic_ncols=True)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
