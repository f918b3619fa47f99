"""The repository's params.yaml, and the same shrunk to seconds of compute."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


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
