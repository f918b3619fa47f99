"""Run a committed study file through the DVC pipeline and keep its outcome in results/.

    python -m alphavil.workflow.study run studies/heldout.yaml [-j 2]

Each seed of the study is one queued DVC experiment, `<study>-s<seed>`, over the study's
params (alphavil/workflow/studyfile.py) with `seeds: [<seed>]`; `dvc queue start -j N`
runs N at once (each stage is one process, so on 2 cores two experiments keep both busy).
When every experiment has succeeded, their metrics/per_epoch.json (read from the
experiments' git refs) are pooled with alphavil.report into results/<study>/:

  params.yaml     the params it ran with, default-filled, all seeds
  summary.json    pooled over the seeds (what metrics/summary.json would be for all of them)
  summary.md      the same as a table
  per_epoch.json  every (method, seed, epoch) evaluation
  run.json        machine (CPU, cores), code (git commit, dirty tree), versions, experiments

Only these small JSON/YAML files: the checkpoints stay in the DVC cache. The folder is
written beside results/ and renamed into place, so a killed run leaves the previous
outcome or none. Run again after a kill: experiments that succeeded with the same params
are reused, ones still queued or running are waited for, failed ones are queued again and
DVC's run-cache restores every stage that had finished. One study at a time per
repository (a lock file with the holder's pid; a dead holder's lock is taken over).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import yaml

from alphavil.config import Params, ParamsError, check_data_source
from alphavil.store.artifacts import ArtifactError, write_json, write_text
from alphavil.workflow import warm
from alphavil.workflow.expqueue import _dvc, busy_names, dvc_records, queue_all, run_queue
from alphavil.workflow.studyfile import require_committed, study_params

RESULTS = Path("results")
LOCK = Path(".dvc/tmp/alphavil-study.lock")
FILES = ("params.yaml", "summary.json", "summary.md", "per_epoch.json", "run.json")


# --- one study at a time -------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextmanager
def study_lock(path: Path, what: str):
    """Hold `path` (holding "<pid> <what>") for the block; a lock whose pid is dead is
    stale and taken over; a live one is a ParamsError naming its holder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # the holder's line is in the lock from the moment it exists (written to a private file,
    # then hard-linked into place, which fails if the lock exists): a second study never
    # reads an empty lock and takes it for a dead holder's
    mine = path.with_name(f"{path.name}.{os.getpid()}")
    write_text(mine, f"{os.getpid()} {what}\n")
    try:
        for _ in range(2):
            try:
                os.link(mine, path)
                break
            except FileExistsError:
                text = path.read_text() if path.exists() else ""
                head = text.split()[:1]
                pid = int(head[0]) if head and head[0].isdigit() else 0
                if pid and _alive(pid):
                    raise ParamsError(
                        f"another study is running in this repository (pid {pid}: "
                        f"{' '.join(text.split()[1:])}); wait for it to finish")
                path.unlink(missing_ok=True)  # stale: its holder died without releasing it
        else:
            raise ParamsError(f"{path}: could not take the study lock")
    finally:
        mine.unlink(missing_ok=True)
    try:
        yield
    finally:
        if path.exists() and path.read_text().split()[:1] == [str(os.getpid())]:
            path.unlink()


# --- records -------------------------------------------------------------------------------

def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else ""


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_record() -> dict:
    """What the numbers ran on: CPU model and cores, load, library versions, code state
    (the commit, and which tracked files differed from it)."""
    changed = [line[3:] for line in _git("status", "--porcelain",
                                         "--untracked-files=no").splitlines() if line[3:]]
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"machine": {"cpu": cpu or platform.processor() or None, "cores": os.cpu_count(),
                        "system": platform.system(),
                        "load": [round(x, 2) for x in os.getloadavg()]},
            "versions": {"python": platform.python_version(), "torch": _version("torch"),
                         "dvc": _version("dvc")},
            "code": {"commit": _git("rev-parse", "HEAD").strip() or None,
                     "dirty": bool(changed), "dirty_paths": changed}}


def exp_name(study: str, seed: int) -> str:
    return f"{study}-s{seed}"


def seed_params(params: Params, seed: int) -> dict:
    """params.yaml of one seed's experiment: the study's, default-filled, with that seed."""
    return {**params.dump(), "seeds": [seed]}


# --- running -------------------------------------------------------------------------------

def plan(study: str, params: Params) -> tuple[list[int], list[str]]:
    """Seeds to queue, and the names of those to remove first (failed, or run with other
    params); a seed whose experiment succeeded with these params or is still queued or
    running is left to DVC."""
    records = dvc_records()
    busy = busy_names(_dvc("queue", "status", capture=True).stdout)
    todo, stale = [], []
    for seed in params.seeds:
        name = exp_name(study, seed)
        if name in busy:
            continue
        mine = [r for r in records if r["name"] == name]
        if any(not r["failed"] and r["params"] == seed_params(params, seed) for r in mine):
            continue
        todo.append(seed)
        if mine:
            stale.append(name)
    return todo, stale


def queue(study: str, params: Params, seeds: list[int], stale: list[str],
          params_path: Path = Path("params.yaml")) -> None:
    for name in stale:  # a failed run lives in the queue, a finished one in exp refs
        subprocess.run([sys.executable, "-m", "dvc", "queue", "remove", name],
                       capture_output=True)
        subprocess.run([sys.executable, "-m", "dvc", "exp", "remove", name],
                       capture_output=True)
    if seeds:
        queue_all(seed_params(params, seeds[0]),
                  {exp_name(study, s): [f"seeds=[{s}]"] for s in seeds}, params_path)


def pooled(params: Params, per_seed: dict[int, dict], metric: str | None,
           majority: dict | None = None) -> dict:
    """Every seed's evaluation records pooled: summary, table and records, computed by
    alphavil.report exactly as the evaluate stage computes them for a run of all seeds."""
    from alphavil.report import curves, markdown, summarise  # imports matplotlib

    methods, epochs = list(params.methods), ["base"] + [e.id for e in params.epochs]
    records = sorted((r for rs in per_seed.values() for r in rs), key=lambda r: (
        methods.index(r["method"]), params.seeds.index(r["seed"]), epochs.index(r["epoch"])))
    summary = summarise(params, records, metric, majority)
    _, aw = curves(params, records, summary["metric"])
    return {"summary": summary, "markdown": markdown(summary, params, aw), "records": records}


def experiment_records(record: dict) -> list[dict]:
    """metrics/per_epoch.json of a finished experiment, from its git commit."""
    import json

    text = _git("show", f"{record['rev']}:metrics/per_epoch.json")
    if not text:
        raise ArtifactError(f"experiment {record['name']!r}: no metrics/per_epoch.json in "
                            f"its commit {record['rev']}")
    return json.loads(text)["records"]


def write_results(out: Path, files: dict[str, object]) -> None:
    """All files into a hidden folder beside `out`, then that folder renamed onto `out`."""
    partial, old = out.parent / f".{out.name}.partial", out.parent / f".{out.name}.old"
    shutil.rmtree(partial, ignore_errors=True)
    for name, content in files.items():
        (write_text if isinstance(content, str) else write_json)(partial / name, content)
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(partial, out)
    shutil.rmtree(old, ignore_errors=True)


def recover(out: Path) -> None:
    """A run killed between write_results' two renames left the previous outcome in
    .<name>.old: put it back."""
    old = out.parent / f".{out.name}.old"
    if old.is_dir() and not out.exists():
        os.replace(old, out)
    shutil.rmtree(out.parent / f".{out.name}.partial", ignore_errors=True)


def run(path: Path, jobs: int) -> Path:
    study, params = study_params(path)
    require_committed(path)  # what results/ says it ran can be read back from git
    check_data_source(params)
    out = RESULTS / study
    start = time.perf_counter()
    with study_lock(LOCK, f"study run {path}"):
        recover(out)
        todo, stale = plan(study, params)
        names = [exp_name(study, s) for s in params.seeds]
        # the queue's workers inherit ALPHAVIL_WARM from `dvc queue start` (alphavil/
        # workflow/warm.py: stages skip their start-up); workers an earlier run left
        # running lack it and run their stages cold
        with warm.worker_env() as worker, warm.environ(worker.env):
            queue(study, params, todo, stale)
            # workers start also when nothing was queued now: a killed run's queue needs them
            done = dict(zip(params.seeds, run_queue(names, jobs, poll_s=2.0)))
        for seed, record in done.items():
            if record["params"] != seed_params(params, seed):
                raise ParamsError(f"experiment {record['name']!r} ran other params than "
                                  f"{path}'s; `dvc exp remove {record['name']}` and run again")
        per_seed = {s: experiment_records(r) for s, r in done.items()}
        first = done[params.seeds[0]]["metrics"] or {}
        result = pooled(params, per_seed, first.get("metric"), first.get("majority"))
        header = f"# Written by `python -m alphavil.workflow.study run {path}`\n"
        write_results(out, {
            "params.yaml": header + yaml.safe_dump(params.dump(), sort_keys=False),
            "summary.json": result["summary"], "summary.md": result["markdown"],
            "per_epoch.json": {"records": result["records"]},
            "run.json": {"study": str(path), "study_sha256": hashlib.sha256(
                path.read_bytes()).hexdigest(), "jobs": jobs,
                "wall_s": round(time.perf_counter() - start, 1),
                "stages_warm": worker.served, "stages_declined": worker.declined,
                "experiments": {str(s): {"name": r["name"], "rev": r["rev"]}
                                for s, r in done.items()}, **machine_record()}})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alphavil.workflow.study run",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("study", type=Path, help="a study file, e.g. studies/heldout.yaml")
    ap.add_argument("-j", "--jobs", type=int, default=2,
                    help="experiments run at once (default 2)")
    args = ap.parse_args(argv)
    try:
        if args.jobs < 1:
            raise ParamsError(f"-j: expected a number of workers >= 1, got {args.jobs}")
        out = run(args.study, args.jobs)
    except (ParamsError, ArtifactError) as err:
        for line in str(err).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    print((out / "summary.md").read_text(), end="")
    return 0
