"""Artifact files are byte-reproducible: DVC hashes them to decide what re-runs."""

import subprocess
import sys

SAVE = """
import sys, torch
from alphavil.artifacts import save_tensors
save_tensors(sys.argv[1], {"b": torch.arange(6.0), "a": torch.ones(2, 3)},
             {"task": "right", "epoch": "ep1", "base": "6da71f55", "examples": "96"})
"""


def test_same_tensors_and_metadata_give_identical_bytes_across_processes(tmp_path):
    # safetensors' own metadata map is written in a per-process hash order
    paths = [tmp_path / f"{i}.safetensors" for i in range(3)]
    for p in paths:
        subprocess.run([sys.executable, "-c", SAVE, str(p)], check=True)
    blobs = {p.read_bytes() for p in paths}
    assert len(blobs) == 1


def test_metadata_round_trips(tmp_path):
    import torch

    from alphavil.artifacts import load_tensors, save_tensors

    meta = {"task": "right", "epoch": "ep1", "base": "x"}
    save_tensors(tmp_path / "d.safetensors", {"w": torch.zeros(2)}, meta)
    tensors, back = load_tensors(tmp_path / "d.safetensors")
    assert back == meta and torch.equal(tensors["w"], torch.zeros(2))
