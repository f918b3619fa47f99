"""The repository's committed params.yaml, and the same shrunk to seconds of compute."""

from __future__ import annotations

import copy
import functools
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


# The first line alphavil.workflow.study writes into a params.yaml it overlays (alphavil/study.py HEADER).
STUDY_HEADER = "# Written by `python -m alphavil.workflow.study"


@functools.lru_cache(maxsize=None)
def committed_params_text(root: Path = ROOT) -> str:
    """The repository's params.yaml as committed (HEAD), the one place tests read it from.

    Not the working tree's file: `make run-nlu` and every `python -m alphavil.workflow.study` rewrite
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
    # the paper's fixed α budget at 3 steps: seconds, and the known cost the compute-matched
    # tests plan from; the default converged fit has its own tests (tests/test_alpha_fit.py)
    raw["alpha"].update(steps=3, batch_size=32, fit="budget")
    # the paper's unconditional merge and a floor of 0: at 3 α steps on 48 dev images the
    # guard refuses merges at random, and the tests of what a merge, a damaged delta or a
    # switched-off task does need it to happen; the guard and the default floor have their
    # own tests (tests/test_guard.py, tests/test_core.py)
    raw["alpha"].update(guard=False)
    raw["alphavil"].update(weight_floor=0.0)
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
