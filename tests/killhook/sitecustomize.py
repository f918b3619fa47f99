"""A `kill -9` in the middle of an artifact write, for tests/test_resume.py.

The test puts this folder on PYTHONPATH of `dvc repro` only, so Python imports this module
at the start of every process DVC starts. With ALPHAVIL_KILL_WRITING=<part of a path>, a
stage process (`python stages/<name>.py`) that is about to rename a written temp file onto
that artifact (alphavil.store.artifacts.atomic_path: temp file written, then os.replace) cuts the
temp file to half its size and SIGKILLs itself instead: the state a kill mid-write leaves.
DVC's own process is left alone: only a script under stages/ is killed.
"""

import os
import signal
import sys
from pathlib import Path

_TARGET = os.environ.get("ALPHAVIL_KILL_WRITING")
_replace = os.replace


def _killed_before_rename(src, dst, *args, **kwargs):
    if Path(sys.argv[0]).parent.name == "stages" and _TARGET in Path(dst).as_posix():
        os.truncate(src, os.path.getsize(src) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    return _replace(src, dst, *args, **kwargs)


if _TARGET:
    os.replace = _killed_before_rename
