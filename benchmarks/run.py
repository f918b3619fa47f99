"""`python -m benchmarks.run` (or `make bench`): the performance table of docs/performance.md.

Everything is measured side by side in one run, on the repository's params.yaml (one
seed, its first epoch, baseline `uniform`: every per-epoch cost of the default
configuration, without running all seeds and epochs). Timings alternate between the
things compared and report medians, so a machine shared with other work skews both
sides alike; the table says how loaded the machine was.

  1. one αVIL epoch (every fine-tune + α estimation + merge) / one uniform-MTL epoch
     over the same examples, in one process (compute only);
  2. the training loop (train_pass, own Adam, the stage's step logger) vs a bare PyTorch
     loop (torch.optim.Adam) on the same model and the same batches;
  3. artifact I/O and DVC bookkeeping as shares of stage wall time, and a no-op repro;
  4. peak memory of α estimation as a multiple of the model's size;
  5. bytes written per epoch (artifacts, logs, DVC cache);
  6. a 10-seed default study through its committed command against the same seeds in one
     process, `make run`, and one seed's `dvc repro` cold and through the warm worker
     (benchmarks/study_speed.py; minutes: `--study-seeds 0` skips it).

The table goes to stdout and, with the raw numbers and the machine, to results/bench/
(table.md, bench.json, run.json), which docs/performance.md shows (`make docs`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import chdir
from pathlib import Path

import yaml

# the integration tests' throwaway git + DVC repository: one place that copies the
# project into a temp folder and initialises it
from benchmarks import study_speed
from testkit.dvcrepo import DvcRepo

ROOT = Path(__file__).resolve().parents[1]
# Lighter α budgets (steps × batch, lr) whose accuracy docs/performance.md reports from
# `dvc exp run`: the epoch ratio of each shows what meeting its target would take.
LIGHT_ALPHA = [dict(fit="budget", steps=20, batch_size=128, lr=0.05),  # the paper's budget
               dict(fit="budget", steps=10, batch_size=64, lr=0.1),
               dict(fit="budget", steps=5, batch_size=128, lr=0.2),
               dict(fit="budget", steps=8, batch_size=32, lr=0.125)]


def bench_params(seeds=(0,), n_epochs=1) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["seeds"] = list(seeds)
    raw["epochs"] = raw["epochs"][:n_epochs]
    raw["baselines"] = ["uniform"]
    return raw


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _alternate(fns: dict, repeats: int) -> dict[str, float]:
    """Median wall time of each fn, run in turns (A B A B ...) so load hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


# --- 1 + 2: in-process compute ---------------------------------------------------------

def epoch_and_loop(work: Path, repeats: int) -> dict:
    from alphavil.config import load_params, validate
    from alphavil.training.context import RunContext
    from alphavil.methods.alphavil import AlphaVIL
    from alphavil.methods.joint import UniformMTL
    from alphavil.models.multitask import trainable_state
    from alphavil.runtime.steplog import step_logger
    from alphavil.training.loop import make_optimizer, task_batches, task_loss, train_pass

    import torch

    from alphavil.runtime.seeding import configure_threads

    configure_threads()  # what every stage does (ALPHAVIL_THREADS, default 1)
    with chdir(work):
        params = load_params("params.yaml")
        ctx = RunContext.build(params, 0)
        epoch = params.epochs[0]
        theta = trainable_state(ctx.model)
        av, uni = AlphaVIL(ctx), UniformMTL(ctx)
        state = av.initial_state()
        parts: dict[str, list[float]] = {"finetunes": [], "alpha": [], "merge": []}

        def alphavil_epoch():
            t0 = time.perf_counter()
            deltas = {t: av.finetune(epoch, theta, state, t)[0] for t in ctx.tasks}
            t1 = time.perf_counter()
            alphas, _ = av.estimate(epoch, theta, deltas, state)
            t2 = time.perf_counter()
            av.merge(theta, alphas, deltas.items())
            parts["finetunes"].append(t1 - t0)
            parts["alpha"].append(t2 - t1)
            parts["merge"].append(time.perf_counter() - t2)

        def uniform_epoch():
            uni.run_epoch(epoch, theta, uni.initial_state())

        alphavil_epoch()  # warm-up: first-call costs belong to neither side
        epoch_t = _alternate({"alphavil": alphavil_epoch, "uniform": uniform_epoch}, repeats)
        # α estimation's work is alpha.steps × alpha.batch_size dev examples forward and
        # backward: the same epoch with lighter α budgets shows what the ratio depends on
        deltas = {t: av.finetune(epoch, theta, state, t)[0] for t in ctx.tasks}
        # what the params' own fit spends: a converged fit records its passes in its trace
        fit_record = av.estimate(epoch, theta, deltas, state)[1].get("fit") or {}
        light_alpha = []
        for budget in LIGHT_ALPHA:
            light = params.dump()
            ctx.params = validate({**light, "alpha": {**light["alpha"], **budget}})
            light_alpha.append(_median_time(lambda: av.estimate(epoch, theta, deltas, state),
                                                repeats))
        ctx.params = params
        examples = sum(len(ctx.split("train", t)) for t in ctx.tasks) * \
            params.alphavil.sample_ratio

        # 2. the same model and the same batches, three ways
        t = params.train
        task = ctx.target
        split = ctx.split("train", task)
        batches = list(task_batches(task, split, torch.randperm(len(split)), t.batch_size))
        model = ctx.model
        names = [n for n, p in model.named_parameters()
                 if n.startswith("trunk.") or n.startswith(f"heads.{task}.")]
        own = dict(model.named_parameters())
        logdir = Path(tempfile.mkdtemp(dir=work))
        torch_optim = torch.optim.Adam  # first use imports torch._dynamo; not timed

        def ours_logged():
            model.load_state_dict({**model.state_dict(), **theta})
            opt = make_optimizer("adam", [own[n] for n in names], t.lr)
            with step_logger(logdir, len(batches), "bench") as on_step:
                train_pass(model, batches, opt, where="bench", on_step=on_step)

        def ours_plain():
            model.load_state_dict({**model.state_dict(), **theta})
            opt = make_optimizer("adam", [own[n] for n in names], t.lr)
            train_pass(model, batches, opt, where="bench")

        def bare():
            model.load_state_dict({**model.state_dict(), **theta})
            opt = torch_optim([own[n] for n in names], lr=t.lr)
            model.train()
            for _, inputs, labels, _ in batches:
                opt.zero_grad()
                loss = task_loss(model(inputs, task), labels).mean()
                loss.backward()
                opt.step()

        bare()
        loop_t = _alternate({"ours_logged": ours_logged, "ours_plain": ours_plain,
                             "bare": bare}, repeats)
    return {
        "epoch": epoch_t, "parts": {k: statistics.median(v) for k, v in parts.items()},
        "examples_per_epoch": int(examples), "loop": loop_t, "light_alpha": light_alpha,
        "alpha_steps": params.alpha.steps, "alpha_fit": params.alpha.fit,
        "alpha_fit_record": fit_record,
        "alpha_batch": params.alpha.batch_size, "loop_steps": len(batches),
        "threads": torch.get_num_threads(),
    }


# --- 3 + 5: stages under DVC -----------------------------------------------------------

def _run(cmd: list[str], cwd: Path, env: dict) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return time.perf_counter() - t


def _io_time(fn) -> tuple[float, float]:
    """(total, artifact I/O) seconds of fn() in this process, I/O timed by wrapping the
    artifacts module's readers and writers (and data.py's reader of prepared data)."""
    from alphavil import pipeline
    from alphavil.store import artifacts
    from alphavil.data import prepared as data

    spent = [0.0]
    originals = {}

    def timed(f):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                spent[0] += time.perf_counter() - t
        return wrapper

    targets = [(artifacts, "load_tensors"), (artifacts, "save_tensors"),
               (artifacts, "file_digest"), (artifacts, "read_json"), (artifacts, "write_json"),
               (data, "load_tensors"), (pipeline, "read_json"), (pipeline, "write_json")]
    # each module's own reference to a reader or writer (from-imports), where it has one
    targets = [(mod, name) for mod, name in targets if hasattr(mod, name)]
    for mod, name in targets:
        originals[(mod, name)] = getattr(mod, name)
        setattr(mod, name, timed(getattr(mod, name)))
    data._load_split_file.cache_clear()
    try:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t, spent[0]
    finally:
        for (mod, name), f in originals.items():
            setattr(mod, name, f)
        data._load_split_file.cache_clear()


def lock_update(work: Path, repeats: int) -> dict | None:
    """DVC's bookkeeping after every stage at the default pipeline's size: it re-parses
    and rewrites the whole dvc.lock (ruamel round-trip YAML), so the cost per stage grows
    with the number of stages. Timed on a copy of the repository's committed dvc.lock,
    which the 1-seed 1-epoch pipeline above is far too small to show; and on the part of
    it one seed's stages make up, the lock each seed would have with one dvc.yaml per seed."""
    from dvc.utils.serialize import dump_yaml, modify_yaml, parse_yaml_for_update

    src = ROOT / "dvc.lock"
    if not src.is_file():
        return None
    (work / "lock").mkdir()
    whole = work / "lock" / "dvc.lock"
    shutil.copy(src, whole)
    data = parse_yaml_for_update(src.read_text(), str(src))
    first = yaml.safe_load((ROOT / "params.yaml").read_text())["seeds"][0]
    seed = re.compile(rf"--seed {first}\b")
    for name in [n for n, e in data["stages"].items() if not seed.search(e["cmd"])]:
        del data["stages"][name]
    one_seed = work / "lock" / "one-seed.lock"
    dump_yaml(str(one_seed), data)

    def timed(lock: Path) -> dict:
        names = list(yaml.safe_load(lock.read_text())["stages"])

        def rewrite():
            with modify_yaml(str(lock)) as d:  # what DVC does after each stage it runs
                d["stages"][names[0]] = d["stages"][names[0]]

        return {"seconds": _median_time(rewrite, repeats), "stages": len(names)}

    return {**timed(whole), "one_seed": timed(one_seed)}


def workspace_noop(repeats: int) -> dict:
    """No-op `dvc repro` and `dvc status` at the default pipeline's real size, in this
    workspace: only when it is in sync with dvc.lock (after `make run`), and as
    `dvc repro --dry`, which checks every stage like a no-op repro but can never run one."""
    dvc = [sys.executable, "-m", "dvc"]
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    if not (ROOT / "dvc.lock").is_file() or subprocess.run(
            dvc + ["status", "-q"], cwd=ROOT, env=env, capture_output=True).returncode != 0:
        return {"skipped": "this workspace is not in sync with dvc.lock (run `make run`)"}
    n = len(yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"])
    times = _alternate({"repro": lambda: _run(dvc + ["repro", "--dry", "-q"], ROOT, env),
                        "status": lambda: _run(dvc + ["status", "-q"], ROOT, env)}, repeats)
    return {"stages": n, **times}


def stages(work: Path, repeats: int) -> dict:
    repo = work / "repo"
    repo.mkdir()
    env = DvcRepo(repo, bench_params()).env
    dvc = [sys.executable, "-m", "dvc"]
    full = _run(dvc + ["repro"], repo, env)
    # before anything rewrites an output: DVC's state db still matches every mtime
    noop = [_run(dvc + ["repro"], repo, env) for _ in range(3)]
    status = [_run(dvc + ["status", "-q"], repo, env) for _ in range(3)]
    commands = {
        "finetune@0-ep0-left": ["stages/finetune.py", "--seed", "0", "--epoch", "ep0",
                                "--task", "left"],
        "estimate_alpha@0-ep0": ["stages/estimate_alpha.py", "--seed", "0", "--epoch", "ep0"],
        "merge@0-ep0": ["stages/merge.py", "--seed", "0", "--epoch", "ep0"],
    }
    from alphavil import pipeline

    inproc = {
        "finetune@0-ep0-left": lambda: pipeline.finetune(0, "ep0", "left", {}),
        "estimate_alpha@0-ep0": lambda: pipeline.estimate_alpha(0, "ep0", {}),
        "merge@0-ep0": lambda: pipeline.merge(0, "ep0", {}),
    }
    rows = {}
    for stage, args in commands.items():
        direct = _median_time(lambda: _run([sys.executable] + args, repo, env), repeats)
        with chdir(repo):
            ios = [_io_time(inproc[stage]) for _ in range(repeats)]
        rows[stage] = {"process": direct, "in_process": statistics.median(t for t, _ in ios),
                       "io": statistics.median(i for _, i in ios)}
    # DVC bookkeeping: `dvc repro -f` of the whole 1-epoch pipeline vs the same stage
    # commands (from dvc.lock, in its order) run one after another without DVC
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    cmds = [entry["cmd"] for entry in lock.values()]

    def plain():
        for cmd in cmds:
            _run(["bash", "-c", cmd], repo, env)

    whole = _alternate({"dvc": lambda: _run(dvc + ["repro", "-f"], repo, env),
                        "plain": plain}, repeats)

    def size(*rels):
        total = 0
        for rel in rels:
            p = repo / rel
            files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
            total += sum(f.stat().st_size for f in files)
        return total

    cache = size(".dvc/cache")
    epoch_out = size("deltas/s0/ep0", "alphas/s0/ep0.json", "checkpoints/s0/ep0")
    logs = size("logs/s0/ep0")
    model_bytes = size("checkpoints/s0/ep0/model.safetensors")
    return {"full_repro": full, "stages": rows, "whole": whole, "n_stages": len(cmds),
            "lock_update": lock_update(work, repeats), "noop_repro": statistics.median(noop),
            "status": statistics.median(status), "epoch_artifact_bytes": epoch_out,
            "epoch_log_bytes": logs, "checkpoint_bytes": model_bytes,
            "cache_bytes_total": cache, "workspace_bytes_total": size(
                "data/prepared", "checkpoints", "deltas", "alphas", "baselines"),
            "repo": repo}


# --- 4: memory of α estimation (own process, so the peak is its own) -----------------------

_MEM_SCRIPT = r"""
import json
from alphavil import pipeline
from alphavil.store import layout
from alphavil.store.artifacts import load_delta
from alphavil.config import load_params
from alphavil.training.context import RunContext
from alphavil.methods.alphavil import AlphaVIL
from alphavil.runtime.seeding import configure_threads
from benchmarks.memory import PeakTensorBytes
configure_threads()
params = load_params("params.yaml")
ctx = RunContext.build(params, 0)
epoch = params.epochs[0]
theta, _, digest = pipeline._load_prev(ctx, "alphavil", epoch.prev)
deltas = {t: load_delta(layout.delta_path(0, epoch.id, t), theta, digest)[0] for t in ctx.tasks}
ctx.split("dev", ctx.target)
with PeakTensorBytes() as mem:
    AlphaVIL(ctx).estimate(epoch, theta, deltas, AlphaVIL(ctx).initial_state())
model = sum(v.numel() * v.element_size() for v in theta.values())
delta_bytes = sum(v.numel() * v.element_size() for d in deltas.values() for v in d.values())
print(json.dumps({"peak": mem.peak, "model_bytes": model, "delta_bytes": delta_bytes,
                  "tasks": len(deltas), "batch": params.alpha.batch_size}))
"""


def memory(repo: Path, env: dict) -> dict:
    env = {**env, "PYTHONPATH": os.pathsep.join([str(repo), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-c", _MEM_SCRIPT], cwd=repo, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


RESULTS = Path("results/bench")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--study-seeds", type=int, default=10,
                    help="seeds of the study-speed measurement (0: skip it)")
    ap.add_argument("--out", type=Path, default=RESULTS,
                    help="folder for table.md, bench.json and run.json (docs render them)")
    args = ap.parse_args(argv)
    os.environ.setdefault("ALPHAVIL_QUIET", "1")
    load_start = loadavg()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="alphavil-bench-") as tmp:
        work = Path(tmp)
        st = stages(work, args.repeats)
        st["workspace"] = workspace_noop(args.repeats)
        repo = st.pop("repo")
        env = {**os.environ, "PYTHONPATH": str(repo)}
        mem = memory(repo, env)
        ep = epoch_and_loop(repo, args.repeats)
    speed = study_speed.measure(args.study_seeds) if args.study_seeds else None
    load_end = loadavg()
    table = _table(ep, st, mem, speed, load_start, load_end, args.repeats)
    print(table, end="")
    from alphavil.workflow.studyrun import machine_record, write_results

    write_results(args.out, {
        "table.md": table,
        "bench.json": json.loads(json.dumps({"epoch": ep, "stages": st, "memory": mem,
                                             "study_speed": speed}, default=str)),
        "run.json": {"command": "make bench (python -m benchmarks.run)",
                     "repeats": args.repeats, "load": [load_start, load_end],
                     "wall_s": round(time.perf_counter() - start, 1), **machine_record()}})


def _table(ep, st, mem, speed, load_start, load_end, repeats) -> str:
    e, loop = ep["epoch"], ep["loop"]
    rows = []

    def row(what, value, target, ok):
        rows.append((what, value, target, "yes" if ok else ("no" if ok is False else "-")))

    ratio = e["alphavil"] / e["uniform"]
    row("αVIL epoch / uniform-MTL epoch (same examples)",
        f"{ratio:.2f} ({e['alphavil']:.2f} s / {e['uniform']:.2f} s)", "≤ 1.15", ratio <= 1.15)
    p = ep["parts"]
    row("  of which fine-tunes / α estimation / merge",
        f"{p['finetunes']:.2f} / {p['alpha']:.2f} / {p['merge']:.3f} s", "", None)
    fit = ep.get("alpha_fit_record") or {}
    if ep.get("alpha_fit") == "converge" and fit:
        row("  α estimation's work (alpha.fit converge): dev example passes fwd+bwd",
            f"{fit['example_passes']} ({fit['dev_passes']} whole-dev passes, {fit['steps']} "
            f"L-BFGS iterations; the epoch trains on {ep['examples_per_epoch']})", "", None)
    else:
        row("  α estimation's work: alpha.steps × batch = dev examples fwd+bwd",
            f"{ep['alpha_steps']} × {ep['alpha_batch']} = {ep['alpha_steps'] * ep['alpha_batch']}"
            f" (the epoch trains on {ep['examples_per_epoch']})", "", None)
    for budget, t_alpha in zip(LIGHT_ALPHA, ep["light_alpha"]):
        light = (p["finetunes"] + t_alpha + p["merge"]) / e["uniform"]
        row(f"  same ratio with the budget fit, α {budget['steps']} × {budget['batch_size']}, "
            f"lr {budget['lr']}",
            f"{light:.2f} (α estimation {t_alpha:.2f} s)", "≤ 1.15", light <= 1.15)
    for name, key in (("train_pass + step log", "ours_logged"), ("train_pass, no log", "ours_plain")):
        thr = loop["bare"] / loop[key]
        row(f"training loop throughput vs bare loop ({name})",
            f"{thr:.2f}× ({loop[key]:.2f} s vs {loop['bare']:.2f} s, {ep['loop_steps']} steps)",
            "≥ 0.9×", thr >= 0.9)
    for stage, r in st["stages"].items():
        io = r["io"] / r["process"]
        start = (r["process"] - r["in_process"]) / r["process"]
        row(f"{stage}: process / in-process wall",
            f"{r['process']:.2f} / {r['in_process']:.2f} s (start-up {100 * start:.0f}%)",
            "", None)
        row("  artifact I/O share of stage process", f"{100 * io:.1f}% ({r['io']*1000:.0f} ms)",
            "≤ 5%", io <= 0.05)
    wh = st["whole"]
    book = (wh["dvc"] - wh["plain"]) / wh["dvc"]
    row(f"DVC bookkeeping share: `dvc repro -f` vs its {st['n_stages']} commands run plainly",
        f"{100 * book:.1f}% ({wh['dvc']:.1f} s vs {wh['plain']:.1f} s)", "≤ 5%", book <= 0.05)
    lu = st["lock_update"]
    if lu:
        # an epoch runs 2 fine-tunes (K = 2 tasks), one α estimation and one merge
        r = st["stages"]
        per_stage = (2 * r["finetune@0-ep0-left"]["process"] + r["estimate_alpha@0-ep0"]["process"]
                     + r["merge@0-ep0"]["process"]) / 4
        share = lu["seconds"] / per_stage
        row(f"DVC lock rewrite after each stage, at the default's {lu['stages']} stages",
            f"{lu['seconds']:.2f} s = {100 * share:.0f}% of a mean epoch-stage process "
            f"({per_stage:.2f} s)", "≤ 5%", share <= 0.05)
        one = lu["one_seed"]
        share = one["seconds"] / per_stage
        row(f"  the same with one dvc.yaml per seed ({one['stages']} stages in a lock)",
            f"{one['seconds']:.2f} s = {100 * share:.1f}%", "≤ 5%", share <= 0.05)
    row("no-op `dvc repro`", f"{st['noop_repro']:.2f} s", "< 3 s", st["noop_repro"] < 3)
    row("`dvc status`", f"{st['status']:.2f} s", "", None)
    ws = st["workspace"]
    if "skipped" in ws:
        row("no-op `dvc repro` at the default pipeline's size", ws["skipped"], "< 3 s", None)
    else:
        row(f"no-op `dvc repro` at the default's {ws['stages']} stages (`--dry`, this workspace)",
            f"{ws['repro']:.2f} s", "< 3 s", ws["repro"] < 3)
        row(f"`dvc status` at the default's {ws['stages']} stages", f"{ws['status']:.2f} s",
            "", None)
    held = mem["model_bytes"] + mem["delta_bytes"]
    row("α estimation peak memory / model size",
        f"{(mem['peak'] + held) / mem['model_bytes']:.1f}× = inputs θ + {mem['tasks']} deltas "
        f"{held / mem['model_bytes']:.1f}× + working set {mem['peak'] / mem['model_bytes']:.1f}× "
        f"(model {mem['model_bytes'] / 2**20:.2f} MiB; working set "
        f"{mem['peak'] / 2**20:.1f} MiB, mostly activations of a {mem['batch']}-example batch)",
        "", None)
    row("bytes written per epoch (artifacts)",
        f"{st['epoch_artifact_bytes'] / 2**20:.2f} MiB (+ {st['epoch_log_bytes'] / 2**10:.0f} KiB "
        f"logs; checkpoint {st['checkpoint_bytes'] / 2**20:.2f} MiB)", "", None)
    row("DVC cache / workspace bytes after the 1-epoch run",
        f"{st['cache_bytes_total'] / 2**20:.2f} / {st['workspace_bytes_total'] / 2**20:.2f} MiB",
        "", None)
    for what, value, target, ok in speed and study_speed.rows(speed) or []:
        row(what, value, target, ok)
    w = max(len(r[0]) for r in rows)
    v = max(len(r[1]) for r in rows)
    lines = [f"| {'measure'.ljust(w)} | {'value'.ljust(v)} | target | met |",
             f"|{'-' * (w + 2)}|{'-' * (v + 2)}|--------|-----|"]
    for what, value, target, ok in rows:
        lines.append(f"| {what.ljust(w)} | {value.ljust(v)} | {target.ljust(6)} | {ok:3} |")
    lines += ["", f"medians of {repeats} alternating repeats (the study-speed rows: one run "
              f"each); torch threads {ep['threads']}; {os.cpu_count()} CPUs; load average "
              f"{load_start} at start, {load_end} at end; full 1-seed 1-epoch `dvc repro` "
              f"{st['full_repro']:.1f} s"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
