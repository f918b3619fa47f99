"""What benchmarks/gpu_check.py runs in fresh processes, one module each.

Start-up probes (`python -m benchmarks.gpu_probes.<name> [device]`) time one first use
from inside the process and print it as one JSON line; the orchestrator adds the process's
wall time. Children (env, reference, compute) take their keyword arguments as JSON and
write their result to a file: `python -m benchmarks.gpu_probes.<name> --args '{...}'
--result out.json`. This module imports nothing heavy: it runs inside every probe.
"""

from __future__ import annotations

import json
import sys
import time

# modules a stage should not pull in: the compiler stack (seconds of import) and transformers
HEAVY = ("torch._dynamo", "torch._inductor", "transformers")


def tail(text: str, n: int = 2500) -> str:
    return text if len(text) <= n else "..." + text[-n:]


def report(seconds: float, *, heavy: bool = True) -> None:
    """A probe's result: the seconds it timed and which heavy modules are loaded by then."""
    out = {"seconds": seconds}
    if heavy:
        out["heavy"] = [m for m in HEAVY if m in sys.modules]
    print(json.dumps(out))


def on_device(name: str):
    """The device, initialised (so its start-up is not timed), and its synchronize."""
    import torch

    dev = torch.device(name)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.zeros(1, device=dev).add_(1)
    sync()
    return dev, sync


def time_first_step(device: str, build) -> None:
    """Build an optimizer with build(params, device) and take its first step, timed."""
    import torch

    dev, sync = on_device(device)
    p = [torch.nn.Parameter(torch.zeros(4096, device=dev)) for _ in range(4)]
    t = time.perf_counter()
    opt = build(p, dev)
    for q in p:
        q.grad = torch.ones_like(q)
    opt.step()
    sync()
    report(time.perf_counter() - t)


def run_child(fn) -> None:
    """A child's entry point: fn(**args) into the result file, a traceback as its error."""
    import argparse
    import os
    import traceback
    from pathlib import Path

    ap = argparse.ArgumentParser()
    ap.add_argument("--args", required=True)
    ap.add_argument("--result", required=True)
    args = ap.parse_args()
    os.environ.setdefault("ALPHAVIL_QUIET", "1")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    try:
        result = fn(**json.loads(args.args))
    except Exception:  # noqa: BLE001 - reported to the orchestrator
        result = {"error": tail(traceback.format_exc())}
    Path(args.result).write_text(json.dumps(result, default=str))
