"""The one place where checkpoints, deltas and JSON artifacts are written and read.

Every write goes to a temporary file in the same folder and is renamed into place, so a
killed stage never leaves a half-written artifact. Weights are only ever read with
safetensors: no pickle. Every safetensors file carries a digest of its tensors, checked on
every load, and JSON artifacts hold finite numbers only, so a damaged or hand-edited
artifact stops the stage that reads it instead of being used.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from alphavil.runtime import distributed


class ArtifactError(RuntimeError):
    """A checkpoint, delta or metrics file is missing, corrupt or does not fit."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temp file left by a killed earlier run would otherwise change the hash of a
    # directory dependency (deltas/s0/ep0) and so the dvc.lock of the resumed run.
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | Path, obj: object) -> None:
    if not distributed.is_main():  # data-parallel ranks compute the same artifact
        return
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # NaN, Infinity, or a literal such as 1e999
        raise ValueError(f"non-finite number {text}")
    return value


def read_json(path: str | Path) -> dict:
    """A JSON object with finite numbers only (write_json cannot write anything else)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: missing (did the stage that writes it run?)")
    try:
        obj = json.loads(path.read_text(), parse_float=_finite, parse_constant=_finite)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{path}: corrupt JSON ({err})") from None
    except ValueError as err:
        raise ArtifactError(f"{path}: {err}; JSON artifacts hold finite numbers only") from None
    if not isinstance(obj, dict):
        raise ArtifactError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def field_error(path: str | Path, key: str, expected: str, got: object) -> ArtifactError:
    """A JSON artifact whose content is not what the stage that writes it writes."""
    shown = repr(got)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return ArtifactError(f"{path}: {key}: expected {expected}, got {shown}; "
                         "re-run the stage that writes it")


def is_number(value: object) -> bool:
    """A finite JSON number (not a bool; not an integer too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_task_values(path: str | Path, key: str, values: object, tasks: list[str], *,
                      nullable: bool = False) -> dict:
    """A {task: number} entry (task weights, α) with exactly the tasks of params.yaml."""
    if not isinstance(values, dict) or set(values) != set(tasks):
        raise field_error(path, key, f"a number for each of the tasks {sorted(tasks)}", values)
    for task, value in values.items():
        if not (is_number(value) or (nullable and value is None)):
            raise field_error(path, f"{key}.{task}",
                              "a number or null" if nullable else "a number", value)
    return values


def write_text(path: str | Path, text: str) -> None:
    if not distributed.is_main():
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text)


_META_KEY = "alphavil"
_DIGEST_KEY = "tensors_sha256"


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over each tensor's name, dtype, shape and raw bytes, in name order: the same
    tensors give the same digest in every process, and one changed byte another one."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode() + b"\n")
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, object] | None = None) -> None:
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ArtifactError(f"{path}: refusing to save non-finite values in {name!r}")
    if not distributed.is_main():
        return
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    metadata = {**(metadata or {}), _DIGEST_KEY: tensor_digest(tensors)}
    # safetensors writes its metadata map in a per-process random (hash) order, so a file
    # with two or more keys differed byte for byte between identical runs; one key
    # holding sorted JSON keeps the file, and so dvc.lock, deterministic.
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={
            _META_KEY: json.dumps(metadata, sort_keys=True, separators=(",", ":"))})


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """The tensors and the metadata save_tensors was given, after checking the digest."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: missing (did the stage that writes it run?)")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ArtifactError(f"{path}: not a readable safetensors file ({err})") from None
    if set(metadata) != {_META_KEY}:
        raise ArtifactError(f"{path}: has no alphavil metadata (not written by this version "
                            "of alphavil); re-run the stage that writes it")
    try:
        metadata = json.loads(metadata[_META_KEY])
    except json.JSONDecodeError as err:
        raise ArtifactError(f"{path}: corrupt metadata ({err})") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get(_DIGEST_KEY), str):
        raise ArtifactError(f"{path}: metadata has no tensor digest ({_DIGEST_KEY}); re-run "
                            "the stage that writes it")
    if metadata.pop(_DIGEST_KEY) != tensor_digest(tensors):
        raise ArtifactError(f"{path}: tensor data does not match the digest stored with it "
                            "(changed or damaged since it was written); re-run the stage "
                            "that writes it")
    return tensors, metadata


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


# --- checkpoints: a folder with model.safetensors + state.json --------------------------

# What a checkpoint is of; both of its files carry it, so that neither can be swapped for
# another run's (another seed's θ_0, a baseline's θ, the wrong epoch) unnoticed.
IDENTITY = ("seed", "method", "epoch")


def save_checkpoint(folder: str | Path, params: dict[str, torch.Tensor], state: dict) -> None:
    """state: JSON-able, with the IDENTITY keys (and task weights, α, ...)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(folder / "model.safetensors", params,
                 {"format": "alphavil-checkpoint", **{k: state[k] for k in IDENTITY}})
    write_json(folder / "state.json", state)


def load_checkpoint(folder: str | Path, *, seed: int | None = None, method: str | None = None,
                    epoch: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """θ and state; each IDENTITY key given must match what both files say."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: checkpoint folder missing")
    weights_path, state_path = folder / "model.safetensors", folder / "state.json"
    params, meta = load_tensors(weights_path)
    if meta.get("format") != "alphavil-checkpoint":
        raise ArtifactError(f"{weights_path}: not an alphavil checkpoint (metadata {meta})")
    state = read_json(state_path)
    expected = {"seed": seed, "method": method, "epoch": epoch}
    for key in IDENTITY:
        if state.get(key) != meta.get(key):
            raise ArtifactError(f"{folder}: state.json is of {key} {state.get(key)!r}, "
                                f"model.safetensors of {meta.get(key)!r}; re-run the stage "
                                "that writes it")
        if expected[key] is not None and state.get(key) != expected[key]:
            raise ArtifactError(f"{state_path}: is the checkpoint of {key} {state.get(key)!r}, "
                                f"expected {expected[key]!r} (copied from another run?); "
                                "re-run the stage that writes it")
    return params, state


def checkpoint_digest(folder: str | Path) -> str:
    return file_digest(Path(folder) / "model.safetensors")


def check_compatible(what: str, tensors: dict[str, torch.Tensor],
                     reference: dict[str, torch.Tensor], *, subset: bool,
                     same_dtype: bool = True) -> None:
    """Refuse a merge of tensors that do not belong to the reference model."""
    extra = sorted(set(tensors) - set(reference))
    if extra:
        raise ArtifactError(f"{what}: has parameters the model does not have: {extra[:5]}")
    if not subset:
        missing = sorted(set(reference) - set(tensors))
        if missing:
            raise ArtifactError(f"{what}: lacks parameters of the model: {missing[:5]}")
    for name, t in tensors.items():
        ref = reference[name]
        if t.shape != ref.shape or (same_dtype and t.dtype != ref.dtype) or (
                not t.is_floating_point()):
            raise ArtifactError(f"{what}: parameter {name!r} is {tuple(t.shape)} {t.dtype}, "
                                f"the model's is {tuple(ref.shape)} {ref.dtype}")


# --- deltas: one safetensors file per (epoch, task) ------------------------------------

def save_delta(path: str | Path, delta: dict[str, torch.Tensor], *, task: str, epoch: str,
               base_digest: str, examples: int) -> None:
    save_tensors(path, delta, {"format": "alphavil-delta", "task": task, "epoch": epoch,
                               "base": base_digest, "examples": str(examples)})


def load_delta(path: str | Path, reference: dict[str, torch.Tensor], base_digest: str,
               *, task: str | None = None, epoch: str | None = None,
               ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    delta, meta = load_tensors(path)
    if meta.get("format") != "alphavil-delta":
        raise ArtifactError(f"{path}: not an alphavil delta file (metadata {meta})")
    # a delta copied or renamed onto another task's or epoch's path must not be merged
    for key, want in (("task", task), ("epoch", epoch)):
        if want is not None and meta.get(key) != want:
            raise ArtifactError(f"{path}: holds the delta of {key} {meta.get(key)!r}, "
                                f"expected {want!r}")
    if meta.get("base") != base_digest:
        raise ArtifactError(f"{path}: delta was computed from checkpoint {meta.get('base')}, "
                            f"but the merge starts from {base_digest}; re-run its fine-tune")
    # deltas may be stored narrower or wider than the weights (alphavil.delta_dtype)
    check_compatible(str(path), delta, reference, subset=True, same_dtype=False)
    for name, t in delta.items():
        if not torch.isfinite(t).all():
            raise ArtifactError(f"{path}: non-finite values in {name!r}")
    return delta, meta
