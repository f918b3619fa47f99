"""The DVC experiment queue as the lr grids and studies use it: queue named experiments all
or none, run them on `jobs` workers and read back their records from `dvc exp show`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from alphavil.config import ParamsError
from alphavil.data.text_sources import EXTERNAL
from alphavil.store.artifacts import ArtifactError, write_text
from alphavil.workflow import safety

SUMMARY = "metrics/summary.json"


def exp_records(show: list) -> list[dict]:
    """`dvc exp show --json` (DVC 3) as one record per experiment: {name, rev, state,
    failed, params (params.yaml), metrics (metrics/summary.json, None if missing)}.
    Its shape: a list of baseline revisions (the first is the workspace), each with
    `experiments`: null or a list of {name, executor: {state} | null, revs: [{rev, name,
    error, data: {params: {file: {data}}, metrics: {file: {data} | {error}}}}]}."""
    records = []
    for baseline in show:
        for group in baseline.get("experiments") or []:
            state = (group.get("executor") or {}).get("state")
            for rev in group.get("revs") or []:
                data = rev.get("data") or {}
                params = (data.get("params") or {}).get("params.yaml", {}).get("data")
                metrics = (data.get("metrics") or {}).get(SUMMARY, {}).get("data")
                records.append({"name": rev.get("name") or group.get("name"),
                                "rev": rev.get("rev"), "state": state,
                                "failed": bool(rev.get("error")) or state == "failed",
                                "params": params, "metrics": metrics})
    return records


def _dvc(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], text=True,
                          capture_output=capture)
    if proc.returncode != 0:
        detail = " ".join((proc.stderr or "").split())[-300:] if capture else ""
        raise ParamsError(f"`dvc {' '.join(args)}` failed (exit {proc.returncode})"
                          + (f": {detail}" if detail else ""))
    return proc


def dvc_records() -> list[dict]:
    return exp_records(json.loads(_dvc("exp", "show", "--json", capture=True).stdout))


def busy_names(status_text: str) -> set[str]:
    """Names of the tasks `dvc queue status` lists as queued or running (its table:
    Task, Name, Created (one or more words), Status)."""
    busy = set()
    for line in status_text.splitlines():
        cells = line.split()
        if len(cells) >= 4 and cells[-1] in ("Queued", "Running"):
            busy.add(cells[1])
    return busy


def finished(records: list[dict], names: list[str]) -> list[dict]:
    """The successful record of each name, in that order; a failed or missing one is an
    error naming it (`dvc queue logs NAME` shows why)."""
    out = []
    for name in names:
        ok = [r for r in records if r["name"] == name and not r["failed"]]
        if len(ok) != 1:
            why = ("exists more than once in `dvc exp show`" if ok
                   else "failed" if any(r["name"] == name for r in records)
                   else "is missing from `dvc exp show`")
            raise ParamsError(f"experiment {name!r} {why}; see `dvc queue logs {name}`")
        out.append(ok[0])
    return out


def _strings(node) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a params string that cannot be a file name (too long, ...)
        return False


def local_inputs(params: dict, root: Path = Path(".")) -> list[str]:
    """The git-ignored files and folders these params read: the offline NLU sources that
    `make install-nlu` unpacks into data/external/, and any relative path a params value
    names (a user's own data in data/own/). A queued experiment runs in a copy of the git
    tree under .dvc/tmp/exps/, which holds none of them unless `dvc exp run --copy-paths`
    names them."""
    candidates = [s for s in _strings(params)
                  if s and not s.startswith(("/", "~")) and "\n" not in s]
    if params.get("setting") == "nlu":
        candidates.append(str(EXTERNAL))
    found = sorted({c for c in candidates if _exists(root / c)})
    if not found:
        return []
    # `git check-ignore` prints the ignored ones among them (exit 1 when none is)
    out = subprocess.run(["git", "check-ignore", *found], cwd=root, text=True,
                         capture_output=True).stdout
    return sorted(set(out.split("\n")) - {""})


def queue_all(params: dict, runs: dict[str, list[str]],
              params_path: Path = Path("params.yaml")) -> None:
    """Queue one DVC experiment per name with its `-S` overrides, all or none. The queue
    snapshots the git tree: params.yaml holds `params` while queueing (so the safety check
    renders the stages the queue will run) and is then put back, and the git-ignored inputs
    the params read travel with each experiment (`local_inputs`)."""
    copies = [a for p in local_inputs(params, params_path.parent) for a in ("-C", p)]
    before = params_path.read_text()
    write_text(params_path, yaml.safe_dump(params, sort_keys=False))
    queued: list[str] = []
    try:
        safety.check()
        for name, sets in runs.items():
            _dvc("exp", "run", "--queue", *[a for s in sets for a in ("-S", s)], *copies,
                 "-n", name)
            queued.append(name)
    except ParamsError:
        if queued:
            subprocess.run([sys.executable, "-m", "dvc", "queue", "remove", *queued])
        raise
    finally:
        write_text(params_path, before)


WORKERS = re.compile(r"Worker status: (\d+) active, (\d+) idle")


def run_queue(names: list[str], jobs: int, poll_s: float = 5.0, patience: int = 3,
              restarts: int = 5) -> list[dict]:
    """Start `jobs` queue workers, wait until none of `names` is queued or running, and
    return their successful records. DVC's workers can exit while experiments are still
    queued (treeverse/dvc#10562), which would leave this waiting for ever: when `patience`
    polls in a row find some of `names` busy and no worker alive, workers are started again;
    after `restarts` such restarts with no change in the queue it is an error naming them."""
    _dvc("queue", "start", "-j", str(jobs), capture=True)
    idle, restarted, last = 0, 0, None
    while True:
        text = _dvc("queue", "status", capture=True).stdout
        busy = busy_names(text) & set(names)
        if not busy:
            return finished(dvc_records(), names)
        workers = WORKERS.search(text)
        idle = idle + 1 if workers and workers.groups() == ("0", "0") else 0
        table = [line for line in text.splitlines() if not WORKERS.search(line)]
        restarted = 0 if table != last else restarted
        last = table
        if idle >= patience:
            if restarted >= restarts:
                raise ArtifactError(
                    f"experiments {sorted(busy)} stay queued or running with no queue worker "
                    f"alive; see `dvc queue status` and `dvc queue logs NAME`, then "
                    f"`dvc queue remove {' '.join(sorted(busy))}` and run again")
            _dvc("queue", "start", "-j", str(jobs), capture=True)
            idle, restarted = 0, restarted + 1
        time.sleep(poll_s)
