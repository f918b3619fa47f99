"""A warm worker: stage processes that skip Python's and torch's start-up.

Every stage of the pipeline is a fresh `python stages/<name>.py` process that DVC starts,
and most of its wall time is start-up (`import torch`, dvclive, alphavil: about 2–3 s on
2 cores, docs/performance.md), while a merge computes for 20 ms. A warm worker imports all
of that once and then forks one child per stage:

    python -m alphavil.workflow.warm -- dvc repro          (what `make run` does)

runs the command with ALPHAVIL_WARM=<socket> in its environment; the study runner starts
one around its queue the same way. A stage script's first line, `warm.delegate()`, sends
its argv, working directory, environment and its stdin/stdout/stderr (SCM_RIGHTS) to the
worker and exits with the child's exit status. The child is a fork of a process that has
only imported modules (no torch op has run, so no OpenMP pool exists to break across the
fork); it takes the stage's directory, environment and file descriptors and runs the same
script with runpy, so DVC sees the same command, outputs and exit status as a cold run.

The stage runs cold instead (nothing lost but time) when no worker answers, or when the
alphavil source the stage would import differs from what the worker imported (an edit
made after the worker started: compared by a hash of every .py file). A child dies with
its worker (PR_SET_PDEATHSIG) and is killed when its stage process goes away (DVC killed
it, or `dvc queue kill`), so a killed stage leaves no child writing artifacts.

This module imports only the standard library until the worker preloads: the stage
process that delegates must start in milliseconds.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import traceback
from contextlib import contextmanager
from pathlib import Path

ENV = "ALPHAVIL_WARM"
# what a stage imports: the worker pays for these once
PRELOAD = ("torch", "numpy", "dvclive", "alphavil.cli", "alphavil.pipeline")
_HEADER = struct.Struct("!I")


def source_hash() -> str:
    """Hash of the alphavil package this interpreter imports (paths and contents)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{root}:{h.hexdigest()}"


def _send(sock: socket.socket, obj: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(obj).encode()
    if fds:
        socket.send_fds(sock, [_HEADER.pack(len(data)) + data], fds)
    else:
        sock.sendall(_HEADER.pack(len(data)) + data)


def _recv(sock: socket.socket, with_fds: int = 0) -> tuple[dict | None, list[int]]:
    """One framed message (None at EOF) and any file descriptors that came with it."""
    buf, fds = b"", []
    while len(buf) < _HEADER.size or len(buf) < _HEADER.size + _HEADER.unpack(
            buf[:_HEADER.size])[0]:
        if with_fds and not fds:
            chunk, got, _, _ = socket.recv_fds(sock, 1 << 16, with_fds)
            fds.extend(got)
        else:
            chunk = sock.recv(1 << 16)
        if not chunk:
            return None, fds
        buf += chunk
    n = _HEADER.unpack(buf[:_HEADER.size])[0]
    return json.loads(buf[_HEADER.size:_HEADER.size + n]), fds


# --- the stage side ------------------------------------------------------------------------

def delegate() -> None:
    """Run this stage process's script in the warm worker named by ALPHAVIL_WARM and exit
    with its status; return (run cold) when there is none or it declines."""
    path = os.environ.get(ENV)
    if not path:
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        _send(sock, {"argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ),
                     "path": sys.path[0], "source": source_hash()}, [0, 1, 2])
        reply, _ = _recv(sock)
    except OSError:
        reply = None
    if not reply or not reply.get("accepted"):
        sock.close()
        return  # no worker, or other code: the stage runs here as it would without one
    try:
        done, _ = _recv(sock)
    except OSError:
        done = None
    if done is None:  # the worker died mid-stage, and its child with it
        print("error: the warm worker stopped while running this stage; run it again",
              file=sys.stderr)
        sys.exit(1)
    sys.exit(done["exit"])


# --- the worker side -----------------------------------------------------------------------

def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: a child then outlives a killed worker until its stage ends


def _run_child(request: dict, fds: list[int]) -> int:
    """In the forked child: become the stage process, run its script, return its status."""
    import io
    import runpy

    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    for fd in fds:
        os.close(fd)
    # fresh text streams on the stage's descriptors, buffered as a cold start would be
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False),
                                  line_buffering=os.isatty(1), write_through=False)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True,
                                  errors="backslashreplace")
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.pop(ENV, None)  # the child is the stage: it must not delegate again
    sys.argv = list(request["argv"])
    sys.path[0] = request["path"]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if not isinstance(stop.code, (int, type(None))):
            print(stop.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    return code


class Worker:
    """The select loop: accept a stage, fork it, report its exit status; single-threaded,
    so that fork never copies a lock held by another thread."""

    def __init__(self, path: str):
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.source = source_hash()
        self.running: dict[int, tuple[socket.socket, int]] = {}  # pidfd -> (conn, pid)
        self.by_conn: dict[socket.socket, int] = {}               # conn -> pidfd
        self.served = self.declined = 0

    def _start(self, conn: socket.socket) -> None:
        try:
            request, fds = _recv(conn, with_fds=3)
        except (OSError, ValueError):
            request, fds = None, []
        if request is None or request.get("source") != self.source or len(fds) != 3:
            self.declined += 1
            for fd in fds:
                os.close(fd)
            why = ("no request" if request is None else "other code" if
                   request.get("source") != self.source else "no descriptors")
            try:
                _send(conn, {"accepted": False, "why": why, "worker": self.source})
            except OSError:
                pass
            conn.close()
            return
        sys.stdout.flush(), sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _die_with_parent()
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                self.listener.close()
                for other in self.by_conn:
                    other.close()
                conn.close()
                code = _run_child(request, fds)
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        for fd in fds:
            os.close(fd)
        self.served += 1
        pidfd = os.pidfd_open(pid)
        self.running[pidfd] = (conn, pid)
        self.by_conn[conn] = pidfd
        _send(conn, {"accepted": True})

    def _finish(self, pidfd: int, *, kill: bool) -> None:
        conn, pid = self.running.pop(pidfd)
        del self.by_conn[conn]
        if kill:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(pidfd)
        if not kill:
            code = os.waitstatus_to_exitcode(status)
            try:  # a signal's death as a shell reports it
                _send(conn, {"exit": code if code >= 0 else 128 - code})
            except OSError:
                pass
        conn.close()

    def serve(self, until: int | None = None) -> None:
        """Serve until `until` (a pidfd, or a pipe's read end) becomes readable."""
        while True:
            watch = [self.listener, *self.by_conn, *self.running]
            if until is not None:
                watch.append(until)
            ready, _, _ = select.select(watch, [], [])
            for r in ready:
                if isinstance(r, int) and r == until:
                    for pidfd in list(self.running):
                        self._finish(pidfd, kill=True)
                    return
                if r is self.listener:
                    conn, _ = self.listener.accept()
                    self._start(conn)
                elif isinstance(r, socket.socket) and r in self.by_conn:
                    # a running stage's process went away (killed): its child goes too
                    try:
                        gone = not r.recv(1, socket.MSG_PEEK)
                    except OSError:
                        gone = True
                    if gone:
                        self._finish(self.by_conn[r], kill=True)
                elif r in self.running:
                    self._finish(r, kill=False)


def preload() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)


@contextmanager
def environ(entries: dict[str, str]):
    """os.environ with `entries` for the block (what `dvc queue start` hands its workers)."""
    saved = {k: os.environ.get(k) for k in entries}
    os.environ.update(entries)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Handle:
    """What worker_env yields: the environment entry to export, and after the block how
    many stages the worker ran and declined (run cold instead)."""

    def __init__(self, env: dict[str, str]):
        self.env, self.served, self.declined = env, 0, 0


@contextmanager
def worker_env():
    """A warm worker for the block, as a subprocess that lives until the block ends (or this
    process dies: it watches a pipe from us). ALPHAVIL_NO_WARM=1 starts none: every stage
    then runs cold, as its own process from start to end (to debug or time a stage, or to
    catch a stage's process from outside)."""
    if os.environ.get("ALPHAVIL_NO_WARM") == "1":
        yield Handle({})
        return
    folder = tempfile.mkdtemp(prefix="alphavil-warm-")
    path = os.path.join(folder, "socket")
    # `-c` with the working directory dropped from sys.path: the worker imports alphavil
    # from where a stage script (whose sys.path[0] is stages/) imports it
    code = ("import sys; sys.path.pop(0); from alphavil.workflow.warm import main; "
            f"sys.exit(main(['serve', {path!r}]))")
    proc = subprocess.Popen([sys.executable, "-c", code],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        ready = proc.stdout.readline()  # after the imports: a stage never waits on them
        handle = Handle({ENV: path} if ready.strip() == b"ready" else {})
        yield handle
    finally:
        proc.stdin.close()
        counts = proc.stdout.read().split()
        proc.wait()
        if len(counts) == 2 and "handle" in locals():
            handle.served, handle.declined = int(counts[0]), int(counts[1])
        Path(path).unlink(missing_ok=True)
        os.rmdir(folder)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m alphavil.workflow.warm",
        description="Run a command (e.g. `dvc repro`) with a warm worker for its stages.")
    ap.add_argument("command", nargs=argparse.REMAINDER,
                    help="`-- CMD ...`, or `serve SOCKET` (the worker itself)")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if command[:1] == ["serve"] and len(command) == 2:
        preload()
        worker = Worker(command[1])
        print("ready", flush=True)
        worker.serve(until=sys.stdin.fileno())  # EOF: whoever started us is gone
        print(worker.served, worker.declined, flush=True)
        return 0
    if not command:
        ap.error("expected a command after --")
    with worker_env() as warm:
        code = subprocess.run(command, env={**os.environ, **warm.env}).returncode
    print(f"warm worker: {warm.served} stages started warm, {warm.declined} declined",
          file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
