"""The data-parallel path: the unchanged stage scripts under `torchrun` and under
`accelerate launch`, with two gloo processes on the CPU, give the same artifacts as one
process, up to float rounding."""

import os
import subprocess
import sys

import pytest
import torch

from alphavil import pipeline
from alphavil.runtime import distributed
from alphavil.store import layout
from alphavil.store.artifacts import load_checkpoint, load_tensors
from testkit.params import ROOT


LAUNCHERS = {
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc_per_node", "2"],
    "accelerate": [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                   "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                   "--dynamo_backend", "no", "--main_process_port", "0"],
}


def _launch(launcher, cwd, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ALPHAVIL_QUIET": "1",
           "OMP_NUM_THREADS": "1"}
    cmd = [*LAUNCHERS[launcher], *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "data-parallel over 2 processes (gloo)" in proc.stderr


def _assert_close(a: dict, b: dict):
    assert set(a) == set(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6, msg=name)


def test_not_distributed_by_default():
    assert not distributed.active()
    assert distributed.rank() == 0 and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.shard(7) == slice(0, 7)


@pytest.mark.integration  # two launcher processes per stage, each importing torch
@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_gloo_processes_give_the_same_delta_and_baseline(workdir, launcher):
    # 97 examples: batches of 32 leave a last batch of 1, so one rank's share is empty
    root = workdir(data={"n_train": 97}, baselines=["diw"])
    pipeline.train_base(0)
    pipeline.finetune(0, "ep0", "left", {})
    pipeline.train_method("diw", 0)
    one_delta, one_meta = load_tensors(layout.delta_path(0, "ep0", "left"))
    one_diw, _ = load_checkpoint(layout.checkpoint_dir("diw", 0, "ep1"))
    layout.delta_path(0, "ep0", "left").unlink()
    layout.checkpoint_dir("diw", 0, "ep1").joinpath("model.safetensors").unlink()

    _launch(launcher, root, str(ROOT / "stages/finetune.py"), "--seed", "0", "--epoch", "ep0",
              "--task", "left")
    _launch(launcher, root, str(ROOT / "stages/train_method.py"), "--method", "diw", "--seed", "0")

    two_delta, two_meta = load_tensors(layout.delta_path(0, "ep0", "left"))
    assert two_meta == one_meta  # same base checkpoint, same example count
    # docs/scale-out.md: the one-process result up to float rounding
    _assert_close(two_delta, one_delta)
    two_diw, _ = load_checkpoint(layout.checkpoint_dir("diw", 0, "ep1"))
    _assert_close(two_diw, one_diw)
    # which says something only if training moved θ by far more than the tolerance
    theta0, _ = load_checkpoint(layout.base_dir(0))
    assert max(float(d.abs().max()) for d in one_delta.values()) > 1e-3
    assert max(float((one_diw[n] - theta0[n]).abs().max()) for n in theta0) > 1e-3
    # rank 0 alone wrote: no stray temp files from the other rank
    assert not list(root.rglob("*.tmp"))
