"""`python -m benchmarks.study_speed`: what running a study through DVC costs.

The same tiny study (2 seeds, the tiny params of testkit) three ways, each in a fresh
throwaway repository so no run reuses another's cache:

  dvc -j 2    `python -m alphavil.workflow.study run` with two queue workers
  dvc -j 1    the same with one worker
  in-process  every stage function in one Python process (testkit.inprocess)

and the seconds each took; the DVC runs' wall time includes queueing and pooling.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

from testkit.dvcrepo import DvcRepo
from testkit.inprocess import run_stages
from testkit.params import tiny_raw


def tiny_study(seeds=(0, 1)) -> dict:
    raw = tiny_raw(baselines=["single_task"], seeds=list(seeds))
    raw["epochs"] = raw["epochs"][:1]
    return raw


def _dvc_study(raw: dict, folder: Path, jobs: int) -> float:
    folder.mkdir()
    repo = DvcRepo(folder, {**raw, "seeds": [raw["seeds"][0]]})
    (folder / "studies").mkdir()
    (folder / "studies" / "bench.yaml").write_text(yaml.safe_dump(
        {"seeds": raw["seeds"], "data_seed": raw["data"]["seed"],
         "baselines": raw["baselines"]}))
    repo.commit("study")
    start = time.perf_counter()
    try:
        repo.run(sys.executable, "-m", "alphavil.workflow.study", "run",
                 "studies/bench.yaml", "-j", str(jobs))
    finally:
        repo.dvc("queue", "stop", "--kill", check=False)
    return time.perf_counter() - start


def measure(seeds=(0, 1)) -> dict:
    """Wall seconds of the study through DVC at -j 2 and -j 1, and in one process."""
    raw = tiny_study(seeds)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        out = {"seeds": len(seeds),
               "dvc_j2_s": _dvc_study(raw, tmp / "j2", 2),
               "dvc_j1_s": _dvc_study(raw, tmp / "j1", 1)}
        start = time.perf_counter()
        run_stages(raw, tmp / "inproc")
        out["in_process_s"] = time.perf_counter() - start
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()}


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
