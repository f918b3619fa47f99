"""What running the pipeline through DVC costs, against the same stages in one process.

    python -m benchmarks.study_speed [--seeds 10] [--tiny]

Each measurement runs in its own throwaway git + DVC repository (no run-cache shared), on
the committed params.yaml (or testkit's tiny params with --tiny):

  study        `python -m alphavil.workflow.study run studies/bench.yaml -j 2` over N seeds:
               one queued DVC experiment per seed, two at once, stages in the warm worker
  in-process   the same N seeds' stage functions one after another in one Python process
               (testkit.inprocess: no DVC, no process per stage)
  make run     what `make run` runs on the default's 5 seeds: the safety check, then
               `python -m alphavil.workflow.warm -- dvc repro`
  repro 1 seed `dvc repro` of one seed cold (a Python process per stage) and through the
               warm worker, to show what the worker saves per stage

The goals (issue: every number from a committed command): study ≤ 0.6 × in-process for
10 seeds; `make run` ≤ 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from testkit.dvcrepo import DvcRepo
from testkit.inprocess import run_stages
from testkit.params import repo_params, tiny_raw


def study_raw(seeds: list[int], tiny: bool) -> dict:
    if not tiny:
        return {**repo_params(), "seeds": list(seeds)}
    raw = tiny_raw(baselines=["single_task"], seeds=list(seeds))
    raw["epochs"] = raw["epochs"][:1]
    return raw


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _study(raw: dict, folder: Path, jobs: int) -> float:
    folder.mkdir()
    repo = DvcRepo(folder, {**raw, "seeds": [raw["seeds"][0]]})
    (folder / "studies").mkdir()
    (folder / "studies" / "bench.yaml").write_text(yaml.safe_dump(
        {"seeds": raw["seeds"], "data_seed": raw["data"]["seed"],
         "baselines": raw["baselines"]}))
    repo.commit("study")
    try:
        return _timed(lambda: repo.run(sys.executable, "-m", "alphavil.workflow.study", "run",
                                       "studies/bench.yaml", "-j", str(jobs)))
    finally:
        repo.dvc("queue", "stop", "--kill", check=False)


def _repro(raw: dict, folder: Path, warm: bool) -> float:
    folder.mkdir()
    repo = DvcRepo(folder, raw)

    def run():
        repo.run(sys.executable, "-m", "alphavil.workflow.safety")
        if warm:
            repo.run(sys.executable, "-m", "alphavil.workflow.warm", "--", "dvc", "repro")
        else:
            repo.dvc("repro")
    return _timed(run)


def measure(seeds: int = 10, tiny: bool = False) -> dict:
    """Wall seconds of each way of running (module docstring), with the load around them."""
    raw = study_raw(list(range(seeds)), tiny)
    default = repo_params() if not tiny else study_raw([0, 1], tiny)
    one = {**default, "seeds": [default["seeds"][0]]}
    out = {"seeds": seeds, "tiny": tiny, "load_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="alphavil-study-speed-") as tmp:
        tmp = Path(tmp)
        out["study_j2_s"] = _study(raw, tmp / "study", 2)
        out["in_process_s"] = _timed(lambda: run_stages(raw, tmp / "inproc"))
        out["make_run_s"] = _repro(default, tmp / "make-run", warm=True)
        out["make_run_seeds"] = len(default["seeds"])
        out["repro_1_seed_cold_s"] = _repro(one, tmp / "cold", warm=False)
        out["repro_1_seed_warm_s"] = _repro(one, tmp / "warm", warm=True)
    out["load_end"] = os.getloadavg()
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()}


def rows(m: dict) -> list[tuple[str, str, str, bool | None]]:
    """(measure, value, goal, met) rows for benchmarks/run.py's table."""
    ratio = m["study_j2_s"] / m["in_process_s"]
    warm = m["repro_1_seed_warm_s"] / m["repro_1_seed_cold_s"]
    return [
        (f"{m['seeds']}-seed default study (`study run -j 2`) / same seeds in one process",
         f"{ratio:.2f} ({m['study_j2_s']:.0f} s / {m['in_process_s']:.0f} s)", "≤ 0.6",
         ratio <= 0.6),
        (f"`make run` ({m['make_run_seeds']} seeds, default; warm worker)",
         f"{m['make_run_s']:.0f} s", "≤ 300 s", m["make_run_s"] <= 300),
        ("1-seed `dvc repro`: warm worker / a process per stage",
         f"{warm:.2f} ({m['repro_1_seed_warm_s']:.1f} s / {m['repro_1_seed_cold_s']:.1f} s)",
         "", None),
    ]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--tiny", action="store_true", help="testkit's tiny params (seconds)")
    args = ap.parse_args(argv)
    os.environ.setdefault("ALPHAVIL_QUIET", "1")
    print(json.dumps(measure(args.seeds, args.tiny), indent=2))


if __name__ == "__main__":
    main()
