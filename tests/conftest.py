import copy
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("ALPHAVIL_QUIET", "1")


def repo_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def tiny_raw(**sections) -> dict:
    """The repository's params.yaml shrunk to seconds of compute."""
    raw = copy.deepcopy(repo_params())
    raw["seeds"] = [0]
    raw["data"].update(n_train=96, n_dev=48, n_test=48)
    raw["model"].update(channels=[4, 8], hidden=16)
    raw["alpha"].update(steps=3, batch_size=32)
    raw["epochs"] = [{"id": "ep0", "prev": "base", "n": 1, "overrides": {}},
                     {"id": "ep1", "prev": "ep0", "n": 2, "overrides": {}}]
    for key, value in sections.items():
        # a task set is given whole; other sections update single knobs
        if key != "tasks" and isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key].update(value)
        else:
            raw[key] = value
    return raw


def changed(params, **sections):
    """Validated `params` with some keys changed (a section's knobs, or a whole key), as
    a params.yaml saying so would give."""
    from alphavil.config import validate

    raw = params.dump()
    for key, value in sections.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(
            raw.get(key), dict) and key != "tasks" else value
    return validate(raw)


def fit_first_epoch_alpha(seed: int = 0) -> None:
    """In the current workdir: θ_0, each task's ep0 fine-tune, then ep0's α (no merge)."""
    from alphavil import pipeline

    pipeline.train_base(seed)
    for task in ("left", "right"):
        pipeline.finetune(seed, "ep0", task, {})
    pipeline.estimate_alpha(seed, "ep0", {})


def flip_a_tensor_byte(path: Path) -> None:
    """Flip one bit in the middle of a safetensors file's tensor data (after its header):
    the file stays readable, with one value slightly changed: silent damage."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    data[start + (len(data) - start) // 2] ^= 1
    path.write_bytes(bytes(data))


@pytest.fixture
def tiny():
    return tiny_raw


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A temp folder as cwd with a tiny params.yaml and prepared data in it."""
    from alphavil import pipeline
    from alphavil.data import _load_split_file

    def make(**sections):
        raw = tiny_raw(**sections)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        monkeypatch.chdir(tmp_path)
        _load_split_file.cache_clear()
        pipeline.prepare("params.yaml")
        return tmp_path

    yield make
    _load_split_file.cache_clear()
