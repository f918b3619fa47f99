"""train.device / train.precision (alphavil/device.py) and the training loop's lazy loss
check. The CUDA tests run where torch sees a GPU (the GPU check runs this file there)."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import yaml

from alphavil import cli, pipeline
from alphavil.runtime import device
from alphavil.store import layout
from alphavil.runtime import stagetime
from alphavil.store.artifacts import load_tensors
from alphavil.config import ParamsError, load_params, validate
from alphavil.training.context import RunContext
from alphavil.models.multitask import load_trainable, trainable_state
from alphavil.training.loop import make_optimizer, task_batches, train_pass
from testkit.params import ROOT, tiny_raw

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# --- device resolution and errors ------------------------------------------------------

@pytest.mark.parametrize("name, available, expected", [
    ("cpu", True, "cpu"), ("cpu", False, "cpu"), ("auto", False, "cpu"),
    ("auto", True, "cuda"), ("cuda", True, "cuda")])
def test_resolve(monkeypatch, name, available, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert device.resolve(name).type == expected


def test_cuda_without_cuda_is_one_line_params_error_before_anything_is_written(
        workdir, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    workdir(train={"device": "cuda"})
    capsys.readouterr()  # prepare's messages
    with pytest.raises(ParamsError) as err:
        pipeline.train_base(0)
    assert str(err.value).startswith("train.device: 'cuda' needs a CUDA device")
    assert "\n" not in str(err.value) and "cpu or auto" in str(err.value)
    assert not layout.base_dir(0).exists()
    # what a stage script prints: the one line, exit status 2, no traceback
    with pytest.raises(SystemExit) as exit_:
        cli.run("params.yaml", lambda pipeline, params: pipeline.train_base(0, params))
    assert exit_.value.code == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("error: train.device:")


@pytest.mark.parametrize("key, value", [("device", "gpu"), ("precision", "fp16"),
                                        ("device", "cuda:1")])
def test_bad_device_or_precision_names_the_key(key, value):
    raw = tiny_raw()
    raw["train"][key] = value
    with pytest.raises(ParamsError, match=rf"train\.{key}: expected one of"):
        validate(raw)


def test_missing_device_and_precision_mean_cpu_fp32():
    raw = tiny_raw()
    del raw["train"]["device"], raw["train"]["precision"]
    compute = device.from_params(validate(raw))
    assert compute == device.CPU and compute.autocast_dtype is None


def test_every_stage_whose_numbers_the_device_changes_declares_it():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in ("train_base", "finetune", "estimate_alpha", "train_method", "evaluate"):
        declared = stages[name].get("params", []) or stages[name]["do"].get("params", [])
        if "train" not in declared:
            assert {"train.device", "train.precision"} <= set(declared), name


# --- precision -------------------------------------------------------------------------

def _conv_output_dtype(ctx):
    seen = []
    hook = ctx.model.trunk.conv[0].register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    inputs, _ = ctx.split("train", "left").batch(torch.arange(4))
    logits = ctx.model(inputs, "left")
    hook.remove()
    return seen[0], logits.dtype


def test_bf16_runs_the_forward_pass_in_bf16_and_hands_back_float32(workdir):
    workdir()
    params = load_params("params.yaml")
    fp32 = RunContext.build(params, 0)
    bf16 = RunContext.build(params, 0, compute=device.Compute(torch.device("cpu"), "bf16"))
    assert _conv_output_dtype(fp32) == (torch.float32, torch.float32)
    assert _conv_output_dtype(bf16) == (torch.bfloat16, torch.float32)
    # autocast computes in bf16; the weights (so checkpoints and deltas) stay float32
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())


def test_bf16_deltas_are_float32_cpu_files_that_differ_from_fp32_and_merge(workdir):
    workdir()
    pipeline.train_base(0)
    pipeline.finetune(0, "ep0", "left", {})
    fp32, _ = load_tensors(layout.delta_path(0, "ep0", "left"))
    raw = yaml.safe_load(open("params.yaml"))
    raw["train"]["precision"] = "bf16"
    open("params.yaml", "w").write(yaml.safe_dump(raw))
    for task in ("left", "right"):
        pipeline.finetune(0, "ep0", task, {})
    bf16, _ = load_tensors(layout.delta_path(0, "ep0", "left"))
    assert set(bf16) == set(fp32)
    for name, d in bf16.items():
        assert d.dtype == torch.float32 and d.device.type == "cpu" and d.is_contiguous()
    assert any(not torch.equal(bf16[n], fp32[n]) for n in fp32)  # the knob acts
    # ... by bf16 rounding of the same training (Adam's sign-like steps flip where a
    # gradient is near 0, so single entries differ, the direction does not)
    a, b = (torch.cat([d[n].flatten() for n in sorted(fp32)]) for d in (fp32, bf16))
    cosine = float(a @ b / (a.norm() * b.norm()))
    assert cosine > 0.95, cosine  # 0.997 measured; an unrelated fine-tune: 0.04
    pipeline.estimate_alpha(0, "ep0", {})
    pipeline.merge(0, "ep0", {})
    merged, _ = load_tensors(layout.checkpoint_dir("alphavil", 0, "ep0") / "model.safetensors")
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in merged.values())


# --- the training loop: lazy loss check, batched step log -----------------------------

@pytest.fixture
def loop(workdir):
    """A model, its θ and 12 batches of 8 examples of `left`."""
    workdir()
    ctx = RunContext.build(load_params("params.yaml"), 0)
    split = ctx.split("train", "left")
    batches = list(task_batches("left", split, torch.arange(len(split)), 8))
    assert len(batches) == 12

    def run(batches, check_every):
        load_trainable(ctx.model, theta)
        logged = []
        opt = make_optimizer("adam", [p for p in ctx.model.parameters() if p.requires_grad],
                             1e-3)
        try:
            stats = train_pass(ctx.model, batches, opt, where="test",
                               on_step=lambda s, v: logged.append((s, v)),
                               check_every=check_every)
        except FloatingPointError as err:
            return err, logged
        return stats, logged

    theta = trainable_state(ctx.model)
    return ctx, batches, run


@pytest.mark.parametrize("check_every", [3, 5, 64])
def test_lazy_check_logs_every_step_in_order_and_trains_the_same(loop, check_every):
    ctx, batches, run = loop
    eager, eager_log = run(batches, 1)
    after_eager = trainable_state(ctx.model)
    lazy, lazy_log = run(batches, check_every)
    assert [s for s, _ in lazy_log] == list(range(1, 13))
    assert lazy_log == eager_log  # the same values, in order, at every step
    assert lazy.losses == eager.losses and lazy.loss_sum == eager.loss_sum
    assert (lazy.steps, lazy.examples) == (12, 96)
    after_lazy = trainable_state(ctx.model)
    assert all(torch.equal(after_lazy[n], after_eager[n]) for n in after_eager)


@pytest.mark.parametrize("bad_step", [0, 4, 5, 7, 11])
@pytest.mark.parametrize("check_every", [1, 5])
def test_lazy_check_names_the_first_non_finite_step(loop, bad_step, check_every):
    _, batches, run = loop
    _, clean_log = run(batches, 1)
    poisoned = list(batches)
    task, inputs, labels, _ = poisoned[bad_step]
    poisoned[bad_step] = (task, inputs, labels, float("nan"))  # the loss is w·L
    err, logged = run(poisoned, check_every)
    assert isinstance(err, FloatingPointError)
    assert f"loss of task 'left' is nan at step {bad_step};" in str(err)
    # the steps before it were logged, with their values, and nothing after it
    assert logged == clean_log[:bad_step]


def test_cpu_training_uses_the_per_tensor_optimizers():
    from alphavil.training import optim

    p = [torch.nn.Parameter(torch.zeros(3))]
    for name, cls in (("sgd", optim.SGD), ("adam", optim.Adam), ("adamw", optim.Adam)):
        assert type(make_optimizer(name, p, 0.1)) is cls  # CPU bytes as before


# --- start-up ------------------------------------------------------------------------

def test_stage_hot_path_imports_neither_the_compiler_stack_nor_transformers():
    """What a CNN stage runs on a GPU (fused optimizer, determinism settings) without
    the seconds that torch._dynamo / transformers cost per process there."""
    code = ("import sys, torch\n"
            "import alphavil.pipeline\n"
            "from alphavil.runtime.device import deterministic_cuda\n"
            "from alphavil.training.optim import make\n"
            "deterministic_cuda(); deterministic_cuda(False)\n"
            "p = [torch.nn.Parameter(torch.zeros(3)) for _ in range(2)]\n"
            "for name in ('sgd', 'adam', 'adamw'):\n"
            "    opt = make(name, p, 0.1, fused=True)\n"
            "    for q in p: q.grad = torch.ones_like(q)\n"
            "    opt.step(); opt.step()\n"
            "print([m for m in ('torch._dynamo', 'torch._inductor', 'transformers')"
            " if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_stage_timing_record(workdir, monkeypatch, tmp_path):
    workdir()
    path = tmp_path / "timing.jsonl"
    monkeypatch.setenv("ALPHAVIL_TIMING", str(path))
    monkeypatch.setattr(stagetime, "_marks", {})
    cli.run("params.yaml", lambda pipeline, params: pipeline.train_base(0, params))
    record = json.loads(path.read_text())
    # (heavy_modules is not checked here: other tests in this process import transformers;
    # test_stage_hot_path_... and tests/test_gpu_check.py check fresh stage processes)
    assert record["status"] == "ok" and isinstance(record["heavy_modules"], list)
    assert record["enter"] <= record["ready"] <= record["end"]
    if record["start"] is not None:  # /proc: this process began before its imports ended
        assert record["start"] <= record["enter"]


# --- on a GPU ------------------------------------------------------------------------

@cuda
def test_cuda_stages_write_cpu_artifacts_that_merge_on_cpu_and_agree_with_cpu(workdir):
    workdir(train={"device": "cuda"})

    def epoch0():
        pipeline.train_base(0)
        for task in ("left", "right"):
            pipeline.finetune(0, "ep0", task, {})
        pipeline.estimate_alpha(0, "ep0", {})
        pipeline.merge(0, "ep0", {})  # on the CPU, from deltas written on the GPU
        return json.loads(layout.alpha_path(0, "ep0").read_text())["alpha"]

    alpha_gpu = epoch0()
    for path in [layout.delta_path(0, "ep0", t) for t in ("left", "right")] + \
            [layout.checkpoint_dir("alphavil", 0, "ep0") / "model.safetensors"]:
        tensors, _ = load_tensors(path)
        assert all(t.device.type == "cpu" and t.is_contiguous() for t in tensors.values())
    raw = yaml.safe_load(open("params.yaml"))
    raw["train"]["device"] = "cpu"
    open("params.yaml", "w").write(yaml.safe_dump(raw))
    alpha_cpu = epoch0()
    for task in alpha_cpu:
        assert math.isclose(alpha_gpu[task], alpha_cpu[task], abs_tol=1e-2), (alpha_gpu,
                                                                              alpha_cpu)


@cuda
def test_cuda_fine_tune_repeats_bit_for_bit(workdir):
    workdir(train={"device": "cuda"})
    pipeline.train_base(0)
    pipeline.finetune(0, "ep0", "left", {})
    first = layout.delta_path(0, "ep0", "left").read_bytes()
    pipeline.finetune(0, "ep0", "left", {})
    assert layout.delta_path(0, "ep0", "left").read_bytes() == first


@cuda
def test_cuda_lazy_check_names_the_step(workdir):
    workdir(train={"device": "cuda"})
    ctx = RunContext.build(load_params("params.yaml"), 0)
    split = ctx.split("train", "left")
    batches = list(task_batches("left", split, torch.arange(len(split)), 8))
    task, inputs, labels, _ = batches[6]
    batches[6] = (task, inputs, labels, float("inf") * 0)
    opt = make_optimizer("sgd", [p for p in ctx.model.parameters() if p.requires_grad], 1e-3)
    with pytest.raises(FloatingPointError, match="is nan at step 6;"):
        train_pass(ctx.model, batches, opt, where="test")
