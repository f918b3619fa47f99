"""`python -m benchmarks.isa`: which CPU settings make the pipeline's artifacts byte-identical
across x86 CPUs, and what each costs in speed (docs/pipeline.md, "Reproducibility").

CPU kernels pick a code path per instruction set (PyTorch's ATen dispatch: AVX2 / AVX-512;
oneDNN's convolutions: AVX2 / AVX-512 / AMX; MKL's GEMM), and different paths sum in a
different order. This runs seed 0 of the repository's params.yaml (prepare, θ_0, every αVIL
epoch, every baseline) once per setting below, each in a fresh process (the settings are
read when torch loads), in a temp folder, and prints one JSON object:
{setting: {"seconds": ..., "hashes": {artifact: sha256 prefix}}}. Run it on two machines and
compare with `python -m benchmarks.isa --compare a.json b.json`.

    python -m benchmarks.isa [--settings none,avx2] [--epochs 3] [--jobs N] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
SETTINGS: dict[str, dict[str, str]] = {
    "none": {},
    "avx2": AVX2,
    "avx2+mkl": {**AVX2, "MKL_CBWR": "AVX2"},
    "avx2+mkl-strict": {**AVX2, "MKL_CBWR": "AVX2,STRICT"},
    # oneDNN's JIT convolutions also choose blockings from the cache sizes; without
    # oneDNN, convolutions run as im2col + MKL GEMM, which MKL_CBWR pins
    "avx2+mkl+no-onednn": {**AVX2, "MKL_CBWR": "AVX2", "ISA_BENCH_NO_MKLDNN": "1"},
    "sse41+mkl-compatible": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                             "MKL_CBWR": "COMPATIBLE"},
}
# every variable that can pick a code path is cleared first, so "none" means none
ISA_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR",
            "MKL_ENABLE_INSTRUCTIONS", "ISA_BENCH_NO_MKLDNN")
OUTPUTS = ("data/prepared", "checkpoints", "deltas", "alphas", "baselines")


def child(epochs: int) -> dict:
    """One setting, in this process: run the seed-0 chain in the cwd, hash the outputs."""
    import torch

    if os.environ.get("ISA_BENCH_NO_MKLDNN") == "1":
        torch.backends.mkldnn.enabled = False
    from alphavil import pipeline
    from alphavil.config import load_params

    params = load_params("params.yaml")
    t0 = time.perf_counter()
    pipeline.prepare("params.yaml")
    t1 = time.perf_counter()
    pipeline.train_base(0)
    for ep in params.epochs:
        for task in params.tasks:
            pipeline.finetune(0, ep.id, task, {})
        pipeline.estimate_alpha(0, ep.id, {})
        pipeline.merge(0, ep.id, {})
    t2 = time.perf_counter()
    for method in params.methods[1:]:
        pipeline.train_method(method, 0)
    t3 = time.perf_counter()
    hashes = {}
    for top in OUTPUTS:
        for path in sorted(Path(top).rglob("*")):
            if path.is_file():
                hashes[path.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return {"seconds": {"prepare": t1 - t0, "alphavil": t2 - t1, "baselines": t3 - t2},
            "capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "hashes": hashes}


def run_setting(name: str, epochs: int) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["seeds"] = [0]
    raw["epochs"] = raw["epochs"][:epochs]
    env = {k: v for k, v in os.environ.items() if k not in ISA_VARS}
    env.update(SETTINGS[name], PYTHONPATH=str(ROOT), ALPHAVIL_QUIET="1")
    with tempfile.TemporaryDirectory(prefix=f"isa-{name}-") as tmp:
        Path(tmp, "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        proc = subprocess.run([sys.executable, "-m", "benchmarks.isa", "--child",
                               "--epochs", str(epochs)], cwd=tmp, env=env,
                              capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return {"env": SETTINGS[name], **json.loads(proc.stdout.strip().splitlines()[-1])}


def compare(a: dict, b: dict) -> dict:
    """Per setting present in both: how many artifacts match, and the first that differs
    in pipeline order (everything after it differs too)."""
    out = {}
    for name in a:
        if name not in b or "hashes" not in a[name] or "hashes" not in b[name]:
            continue
        ha, hb = a[name]["hashes"], b[name]["hashes"]
        same = [k for k in ha if hb.get(k) == ha[k]]
        differ = [k for k in ha if hb.get(k) != ha[k]]
        out[name] = {"identical": len(same), "differ": len(differ), "of": len(ha),
                     "differing": differ[:8]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--jobs", type=int, default=1, help="settings run side by side")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.epochs)))
        return 0
    if args.compare:
        a, b = (json.loads(p.read_text()) for p in args.compare)
        print(json.dumps(compare(a, b), indent=1))
        return 0
    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        ap.error(f"unknown settings {unknown}; expected names from {list(SETTINGS)}")
    # settings may run side by side (one torch thread each): the hashes do not depend on
    # it, only the timings do, so compare timings from runs with the same --jobs
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = dict(zip(names, pool.map(lambda n: run_setting(n, args.epochs), names)))
    results = {}
    for name, r in runs.items():
        results[name] = r
        print(f"{name}: " + (f"{sum(r['seconds'].values()):.1f} s, capability "
                             f"{r['capability']}" if "error" not in r else "FAILED "
                             + r["error"][-300:]), file=sys.stderr, flush=True)
    text = json.dumps(results, indent=1, sort_keys=True)
    if args.json:
        args.json.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
