"""Child `compute`: in one process on the device, at the default data size, the training
loop's throughput against a bare PyTorch loop, the cost of the determinism settings, bf16
against fp32, and an epoch on the device against the same epoch on the CPU
(benchmarks/gpu_check.py, part `compute`)."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
import traceback
from pathlib import Path

import yaml

from benchmarks.gpu_probes import run_child, tail
from benchmarks.run import _alternate


def child_compute(workdir: str, raw: dict, device: str, quick: bool, budget: float) -> dict:
    import torch

    from alphavil import pipeline
    from alphavil.config import load_params
    from alphavil.training.context import RunContext
    from alphavil.runtime.device import CPU, Compute
    from alphavil.runtime.seeding import configure_threads

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
            out[name] = {"error": tail(traceback.format_exc())}
    if device == "cuda":
        out["max_memory_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _loop_setup(ctx, batch_size: int, steps: int):
    import torch

    from alphavil.methods.deltas import task_parameter_names
    from alphavil.models.multitask import trainable_state
    from alphavil.training.loop import task_batches

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

    from alphavil.models.multitask import load_trainable
    from alphavil.runtime.steplog import step_logger
    from alphavil.training.loop import make_optimizer, task_loss, train_pass

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
    from alphavil.methods.deltas import finetune_task
    from alphavil.runtime.device import deterministic_cuda
    from alphavil.models.multitask import load_trainable
    from alphavil.runtime.seeding import generator
    from alphavil.training.loop import make_optimizer, train_pass

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
    from alphavil.models.multitask import trainable_state
    from alphavil.training.loop import evaluate

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
    from alphavil.models.multitask import load_trainable

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
    from alphavil.training.context import RunContext

    device_seconds = statistics.median(_alphavil_epoch(ctx, sync)[2] for _ in range(2))
    cpu_ctx = RunContext.build(params, 0, compute=cpu_compute)
    cpu_seconds = _alphavil_epoch(cpu_ctx, lambda: None)[2]
    return {"device_seconds": device_seconds, "cpu_seconds": cpu_seconds,
            "speedup": cpu_seconds / device_seconds}


if __name__ == "__main__":
    run_child(child_compute)
