"""Artifact files are byte-reproducible (DVC hashes them to decide what re-runs) and
cannot be silently wrong: tensor digests, checkpoint identity, finite JSON."""

import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from alphavil.store.artifacts import (ArtifactError, load_checkpoint, load_tensors, read_json,
                                      save_checkpoint, save_tensors, tensor_digest)
from testkit.artifacts import flip_a_tensor_byte

SAVE = """
import sys, torch
from alphavil.store.artifacts import save_tensors
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
    meta = {"task": "right", "epoch": "ep1", "base": "x"}
    save_tensors(tmp_path / "d.safetensors", {"w": torch.zeros(2)}, meta)
    tensors, back = load_tensors(tmp_path / "d.safetensors")
    assert back == meta and torch.equal(tensors["w"], torch.zeros(2))


# --- the tensor digest: one changed byte, dtype, shape or name is a different file ------

def test_tensor_digest_sees_every_byte_dtype_shape_and_name_but_not_dict_order():
    w = torch.arange(6, dtype=torch.float32)
    base = tensor_digest({"w": w, "b": torch.zeros(2)})
    assert tensor_digest({"b": torch.zeros(2), "w": w.clone()}) == base  # insertion order
    flipped = w.clone()
    flipped.view(torch.int32)[3] ^= 1  # one bit of one element: still finite, nearly equal
    variants = [
        {"w": flipped, "b": torch.zeros(2)},
        {"w": w.view(torch.int32), "b": torch.zeros(2)},  # same bytes, another dtype
        {"w": w.reshape(2, 3), "b": torch.zeros(2)},  # same bytes, another shape
        {"v": w, "b": torch.zeros(2)},  # same bytes, another name
        {"w": w},
    ]
    digests = {tensor_digest(v) for v in variants}
    assert base not in digests and len(digests) == len(variants)


def test_a_flipped_tensor_byte_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "d.safetensors"
    save_tensors(path, {"w": torch.linspace(0, 1, 100)}, {"task": "left"})
    flip_a_tensor_byte(path)
    with pytest.raises(ArtifactError, match=f"{path}: tensor data does not match"):
        load_tensors(path)


def test_a_file_without_the_digest_is_refused(tmp_path):
    path = tmp_path / "d.safetensors"
    save_file({"w": torch.zeros(3)}, str(path), metadata={"format": "alphavil-delta"})
    with pytest.raises(ArtifactError, match=f"{path}: has no alphavil metadata"):
        load_tensors(path)


# --- checkpoints: both files say which run they belong to -----------------------------

def test_checkpoint_identity_is_checked_in_both_files(tmp_path):
    for seed in (0, 1):
        save_checkpoint(tmp_path / f"s{seed}", {"w": torch.full((2,), float(seed))},
                        {"seed": seed, "method": "alphavil", "epoch": "ep0", "weights": {}})
    theta, state = load_checkpoint(tmp_path / "s0", seed=0, method="alphavil", epoch="ep0")
    assert torch.equal(theta["w"], torch.zeros(2)) and state["seed"] == 0
    for key, wrong in (("seed", 1), ("method", "uniform"), ("epoch", "ep1")):
        want = {"seed": 0, "method": "alphavil", "epoch": "ep0", key: wrong}
        with pytest.raises(ArtifactError, match=f"state.json: is the checkpoint of {key}"):
            load_checkpoint(tmp_path / "s0", **want)
    # only the weights of seed 1 copied into seed 0's folder
    shutil.copy(tmp_path / "s1" / "model.safetensors", tmp_path / "s0" / "model.safetensors")
    with pytest.raises(ArtifactError, match="state.json is of seed 0, model.safetensors of 1"):
        load_checkpoint(tmp_path / "s0")


def test_json_artifacts_hold_finite_numbers_and_objects_only(tmp_path):
    path = tmp_path / "a.json"
    for text, message in (('{"a": NaN}', "non-finite number NaN"),
                          ('{"a": -Infinity}', "non-finite number -Infinity"),
                          ('{"a": 1e999}', "non-finite number 1e999"),
                          ('[1, 2]', "expected a JSON object, got list"),
                          ('{"a": 1', "corrupt JSON")):
        path.write_text(text)
        with pytest.raises(ArtifactError, match=f"^{path}: {message}"):
            read_json(path)
    path.write_text('{"a": 1e300, "b": [0.5]}')
    assert read_json(path) == {"a": 1e300, "b": [0.5]}
