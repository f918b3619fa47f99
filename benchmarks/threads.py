"""`python -m benchmarks.threads`: one epoch's compute (αVIL's fine-tunes + α estimation,
and a uniform-MTL epoch) with ALPHAVIL_THREADS=1 vs 2, each in its own process, in turns.
Why stages default to one torch thread: docs/performance.md."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import chdir
from pathlib import Path

import yaml

from .run import ROOT, bench_params

_EPOCH = r"""
import json, time
from alphavil.config import load_params
from alphavil.training.context import RunContext
from alphavil.methods.alphavil import AlphaVIL
from alphavil.methods.joint import UniformMTL
from alphavil.models.multitask import trainable_state
from alphavil.runtime.seeding import configure_threads
threads = configure_threads()
p = load_params("params.yaml"); ctx = RunContext.build(p, 0); ep = p.epochs[0]
theta = trainable_state(ctx.model); av = AlphaVIL(ctx); uni = UniformMTL(ctx)
st = av.initial_state()
t0 = time.perf_counter(); d = {t: av.finetune(ep, theta, st, t)[0] for t in ctx.tasks}
t1 = time.perf_counter(); av.estimate(ep, theta, d, st)
t2 = time.perf_counter(); uni.run_epoch(ep, theta, uni.initial_state())
t3 = time.perf_counter()
print(json.dumps({"threads": threads, "finetunes": t1 - t0, "alpha": t2 - t1, "uniform": t3 - t2}))
"""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="alphavil-threads-") as tmp:
        work = Path(tmp)
        (work / "params.yaml").write_text(yaml.safe_dump(bench_params()))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ALPHAVIL_QUIET": "1"}
        with chdir(work):
            from alphavil import pipeline

            pipeline.prepare("params.yaml")
        runs: dict[int, list[dict]] = {1: [], 2: []}
        for _ in range(args.repeats):
            for n in runs:
                out = subprocess.run([sys.executable, "-c", _EPOCH], cwd=work, check=True,
                                     env={**env, "ALPHAVIL_THREADS": str(n)},
                                     capture_output=True, text=True).stdout
                runs[n].append(json.loads(out.strip().splitlines()[-1]))
    print("| torch threads | fine-tunes (s) | α estimation (s) | uniform epoch (s) |")
    print("|---|---|---|---|")
    for n, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("finetunes", "alpha", "uniform")}
        spread = {k: f"{min(r[k] for r in rs):.2f}–{max(r[k] for r in rs):.2f}"
                  for k in ("finetunes", "uniform")}
        print(f"| {n} | {med['finetunes']:.2f} ({spread['finetunes']}) | {med['alpha']:.2f} | "
              f"{med['uniform']:.2f} ({spread['uniform']}) |")
    print(f"\nmedians (min–max) of {args.repeats} alternating runs; {os.cpu_count()} CPUs; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
