import copy
import functools
import os
import subprocess
from pathlib import Path

import pytest
import yaml

# the `needs` marker's check (a missing install skips, or fails under ALPHAVIL_REQUIRE_ALL=1)
from needs import (pytest_collection_modifyitems, pytest_configure,  # noqa: F401
                   pytest_runtest_setup)

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("ALPHAVIL_QUIET", "1")


# The first line alphavil.study writes into a params.yaml it overlays (alphavil/study.py HEADER).
STUDY_HEADER = "# Written by `python -m alphavil.study"


@functools.lru_cache(maxsize=None)
def committed_params_text(root: Path = ROOT) -> str:
    """The repository's params.yaml as committed (HEAD), the one place tests read it from.

    Not the working tree's file: `make run-nlu` and every `python -m alphavil.study` rewrite
    it with a study's overlay (the NLU task set, other seeds...), and the tests are written
    against the defaults. An edit to params.yaml reaches the tests once committed. Outside a
    git checkout (a copied or unpacked tree) the working tree's file is all there is, and one
    a study wrote is refused rather than read."""
    try:  # ./ : relative to root, which may sit below the top of the repository
        proc = subprocess.run(["git", "-C", str(root), "show", "HEAD:./params.yaml"],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            return proc.stdout
    except FileNotFoundError:  # no git at all
        pass
    text = (root / "params.yaml").read_text()
    if text.startswith(STUDY_HEADER):
        raise RuntimeError(f"{root / 'params.yaml'} holds a study's overlay and there is no "
                           "git HEAD to read the default from; restore the default params.yaml "
                           "(git checkout params.yaml) before running the tests")
    return text


@functools.lru_cache(maxsize=None)
def _committed_params() -> dict:
    return yaml.safe_load(committed_params_text())


def repo_params() -> dict:
    """The committed params.yaml, parsed (a fresh copy: callers edit it)."""
    return copy.deepcopy(_committed_params())


def committed_params_file(folder: Path) -> Path:
    """folder/params.yaml holding the committed params.yaml's text (comments included), for
    code that takes a path."""
    path = Path(folder) / "params.yaml"
    path.write_text(committed_params_text())
    return path


def tiny_raw(**sections) -> dict:
    """The repository's committed params.yaml shrunk to seconds of compute."""
    raw = repo_params()
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
