"""Run the real pipeline in a throwaway git + DVC repository (integration tests)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COPY = ["dvc.yaml", "stages", "alphavil", ".dvcignore", ".gitignore"]


def copy_pipeline(path: Path) -> None:
    """This tree's pipeline files (COPY) into `path`, without bytecode caches."""
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, path / name)


class DvcRepo:
    def __init__(self, path: Path, params: dict):
        self.path = path
        copy_pipeline(path)
        self.write_params(params)
        bindir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "PATH": bindir + os.pathsep + os.environ["PATH"],
                    "PYTHONPATH": str(path), "ALPHAVIL_QUIET": "1",
                    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
                    "DVC_NO_ANALYTICS": "1"}
        self.run("git", "init", "-q")
        self.dvc("init", "-q")
        self.dvc("config", "core.autostage", "false")
        self.commit("init")

    def write_params(self, params: dict) -> None:
        (self.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def params(self) -> dict:
        return yaml.safe_load((self.path / "params.yaml").read_text())

    def run(self, *cmd: str, check: bool = True,
            timeout: float = 600) -> subprocess.CompletedProcess:
        # a bound on every command: a hang fails its test (TimeoutExpired) instead of CI
        proc = subprocess.run(cmd, cwd=self.path, env=self.env, text=True,
                              capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def dvc(self, *args: str, check: bool = True, warm: bool = False
            ) -> subprocess.CompletedProcess:
        """warm: through the warm worker, as `make run` does (no per-stage start-up;
        tests/test_warm.py checks that it writes a cold run's bytes)."""
        worker = [sys.executable, "-m", "alphavil.workflow.warm", "--"] if warm else []
        return self.run(*worker, sys.executable, "-m", "dvc", *args, check=check)

    def repro(self, *args: str, warm: bool = False) -> list[str]:
        """`dvc repro`; returns the names of the stages that ran, except check_params (it
        runs whenever params.yaml changes; tests/test_safety.py is about it)."""
        out = self.dvc("repro", *args, warm=warm)
        ran = re.findall(r"Running stage '([^']+)'", out.stdout + out.stderr)
        return [name for name in ran if name != "check_params"]

    def commit(self, msg: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-qm", msg, "--allow-empty")

    def read(self, rel: str) -> bytes:
        return (self.path / rel).read_bytes()
