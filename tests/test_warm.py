"""The warm worker (alphavil/workflow/warm.py): a delegated stage behaves as the same
command run cold: its output, exit status, files and environment; a killed stage takes its
child with it; other code runs cold."""

from __future__ import annotations

import filecmp
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from alphavil.workflow import warm
from testkit.dvcrepo import DvcRepo
from testkit.params import ROOT, tiny_raw

# a stand-in stage: delegates like stages/*.py do, then reports what it sees
SCRIPT = textwrap.dedent("""
    import os, sys, time
    from alphavil.workflow import warm
    warm.delegate()
    import torch  # preloaded by the worker: a delegated run reports it already there
    print("pid", os.getpid(), "cwd", os.getcwd(), "argv", sys.argv[1:],
          "env", os.environ.get("PROBE"), "warm", os.environ.get("ALPHAVIL_WARM"), flush=True)
    print("to stderr", file=sys.stderr)
    if sys.argv[1] == "sleep":
        open("started", "w").close()
        time.sleep(60)
        open("finished", "w").close()
    sys.exit(int(sys.argv[2]))
""")


@pytest.fixture
def stage(tmp_path):
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "probe.py").write_text(SCRIPT)
    return tmp_path


def _run(cwd: Path, env: dict, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "stages/probe.py", *args], cwd=cwd, text=True,
                          capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                    "PROBE": "seen", **env}, **kw)


def test_delegated_stage_gets_cwd_argv_env_streams_and_exit_status(stage):
    with warm.worker_env() as worker:
        proc = _run(stage, worker.env, "run", "3")
    assert worker.served == 1 and worker.declined == 0
    assert proc.returncode == 3
    out = proc.stdout.split()
    # the child ran the script in the stage's directory with its argv and environment,
    # writing to the stage's own stdout and stderr; it must not delegate again
    assert out[out.index("cwd") + 1] == str(stage)
    assert "['run', '3']" in proc.stdout and "env seen" in proc.stdout
    assert "warm None" in proc.stdout and proc.stderr.strip() == "to stderr"
    assert int(out[out.index("pid") + 1]) != os.getpid()


def test_no_worker_or_other_code_runs_cold(stage, tmp_path):
    cold = _run(stage, {warm.ENV: str(tmp_path / "absent.sock")}, "run", "0")
    assert cold.returncode == 0 and "env seen" in cold.stdout
    with warm.worker_env() as worker:
        # the stage would import other alphavil source than the worker did: cold
        ok = subprocess.run([sys.executable, "-c", textwrap.dedent("""
            import sys
            from alphavil.workflow import warm
            warm.source_hash = lambda: "edited"
            sys.argv = ["stages/probe.py", "run", "0"]
            warm.delegate()
            print("ran cold")
        """)], cwd=stage, text=True, capture_output=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), **worker.env})
    assert ok.stdout.strip() == "ran cold"
    assert worker.served == 0 and worker.declined == 1


def test_killed_stage_takes_its_child_with_it(stage):
    with warm.worker_env() as worker:
        proc = subprocess.Popen([sys.executable, "stages/probe.py", "sleep", "0"], cwd=stage,
                                env={**os.environ, "PYTHONPATH": str(ROOT), **worker.env},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while not (stage / "started").exists() and time.time() < deadline:
            time.sleep(0.1)
        assert (stage / "started").exists()
        pid = int(proc.stdout.readline().split()[1])  # the child's pid, printed by it
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 10
        while _alive(pid) and time.time() < deadline:
            time.sleep(0.1)
        assert not _alive(pid)
    assert not (stage / "finished").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie has exited: read its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _tree(a: Path, b: Path) -> list[str]:
    d = filecmp.dircmp(a, b)
    bad = [str(a / f) for f in d.diff_files + d.left_only + d.right_only]
    for sub in d.common_dirs:
        bad += _tree(a / sub, b / sub)
    return bad


@pytest.mark.integration
def test_dvc_repro_through_worker_writes_the_cold_runs_bytes(tmp_path):
    raw = tiny_raw(baselines=["single_task", "uniform"])
    runs = {}
    for mode in ("cold", "warm"):
        (tmp_path / mode).mkdir()
        DvcRepo(tmp_path / mode, raw)
        cmd = ["dvc", "repro"] if mode == "cold" else [
            sys.executable, "-m", "alphavil.workflow.warm", "--", "dvc", "repro"]
        runs[mode] = subprocess.run(cmd, cwd=tmp_path / mode, text=True, capture_output=True)
        assert runs[mode].returncode == 0, runs[mode].stderr[-2000:]
    # every stage ran in the worker (none declined), and wrote what a cold run writes
    assert " 0 declined" in runs["warm"].stderr
    served = int(runs["warm"].stderr.rsplit("warm worker: ", 1)[1].split()[0])
    assert served >= 9
    for folder in ("checkpoints", "deltas", "alphas", "baselines", "metrics"):
        assert _tree(tmp_path / "cold" / folder, tmp_path / "warm" / folder) == []
    assert (tmp_path / "cold" / "dvc.lock").read_text() == (
        tmp_path / "warm" / "dvc.lock").read_text()


def test_no_warm_starts_no_worker_and_the_stage_runs_cold(stage, monkeypatch):
    monkeypatch.setenv("ALPHAVIL_NO_WARM", "1")
    with warm.worker_env() as worker:
        proc = _run(stage, worker.env, "run", "0")
    assert worker.env == {} and worker.served == 0
    assert proc.returncode == 0 and "warm None" in proc.stdout
    # the script's own process ran it (no fork of a worker)
    out = proc.stdout.split()
    assert int(out[out.index("pid") + 1]) > 0 and "env seen" in proc.stdout
