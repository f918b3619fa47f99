"""benchmarks/gpu_check.py's code paths on the CPU: the pipeline comparison through real
`dvc repro` (where one device must give the in-process reference's bytes exactly) and
the in-process measurements of its `compute` part."""

import json
import subprocess
import sys

import pytest

from testkit.params import ROOT


@pytest.mark.integration
def test_tiny_pipeline_part_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu",
                    "--quick", "--parts", "tiny", "--budget", "1800", "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True, text=True)
    tiny = json.loads((out / "gpu_check.json").read_text())["tiny"]
    agree = tiny["agreement"]
    # one device, the same code and seeds: `dvc repro` and one process give the same bytes
    assert agree["agree"] and agree["alpha_max_abs_diff"] == 0.0
    assert agree["test_acc_max_abs_diff"] == 0.0
    assert set(tiny["dvc"]["alphas"]) == {"s0/ep0", "s0/ep1"}
    assert set(tiny["dvc"]["final"]) == {"alphavil/s0", "uniform/s0"}
    # every stage process reported its timing, and none imported the compiler stack
    stages = tiny["dvc"]["stages"]
    assert {k: v["n"] for k, v in stages.items()} == {
        "check_params": 1, "prepare": 1, "train_base": 1, "finetune": 4, "estimate_alpha": 2,
        "merge": 2,
        "train_method": 1, "evaluate": 1}
    for row in stages.values():
        assert row["wall"] >= row["startup"] >= 0 and row["work"] >= 0
    assert tiny["dvc"]["heavy_modules_seen"] == []
    assert "| α, every epoch and task | 0.00e+00 |" in (out / "gpu_check.md").read_text()


def test_compute_part_on_the_cpu(workdir):
    from benchmarks.gpu_probes import compute
    from alphavil.config import load_params
    from alphavil.training.context import RunContext
    from alphavil.runtime.device import CPU
    from alphavil.runtime.seeding import configure_threads

    workdir()
    configure_threads()  # what stages do; two threads on a busy 2-core machine crawl
    params = load_params("params.yaml")
    ctx = RunContext.build(params, 0)
    no_sync = lambda: None  # noqa: E731
    tp = compute.throughput(ctx, no_sync, quick=True)["32"]
    assert set(tp["vs_bare"]) == {"train_pass", "train_pass + step log",
                                  "train_pass, loss read every step"}
    assert all(v > 0 for v in tp["steps_per_s"].values())
    det = compute.determinism(ctx, no_sync, quick=True)
    assert det["finetune_repeats_bitwise"] == {"on": True, "off": True}
    pr = compute.precision(ctx, no_sync, quick=True)
    assert set(pr["fp32"]["alpha"]) == {"left", "right"} and pr["alpha_max_abs_diff"] < 0.1
    assert ctx.model.autocast_dtype is None  # put back as the run context placed it
    ev = compute.epoch_vs_cpu(ctx, params, no_sync, CPU)
    assert ev["device_seconds"] > 0 and ev["cpu_seconds"] > 0
