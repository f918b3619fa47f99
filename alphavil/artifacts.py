"""The one place where checkpoints, deltas and JSON artifacts are written and read.

Every write goes to a temporary file in the same folder and is renamed into place, so a
killed stage never leaves a half-written artifact. Weights are only ever read with
safetensors: no pickle.
"""

from __future__ import annotations

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


class ArtifactError(RuntimeError):
    """A checkpoint, delta or metrics file is missing, corrupt or does not fit."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | Path, obj: object) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: missing (did the stage that writes it run?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ArtifactError(f"{path}: corrupt JSON ({err})") from None


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> None:
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ArtifactError(f"{path}: refusing to save non-finite values in {name!r}")
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        _canonical_header(tmp)


def _canonical_header(path: Path) -> None:
    """safetensors writes the metadata keys in hash-map order, which changes from one
    process to the next, so equal tensors gave files with different hashes (and DVC saw a
    changed output). Rewrite the JSON header with sorted keys; it has the same content,
    hence the same length (padded with spaces, as the format allows), so the tensor data
    and its offsets stay where they are."""
    with open(path, "r+b") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
        text = json.dumps(header, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode()
        if len(text) > size:  # cannot happen for equal content; keep the file as written
            return
        fh.seek(8)
        fh.write(text + b" " * (size - len(text)))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: missing (did the stage that writes it run?)")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError) as err:
        raise ArtifactError(f"{path}: not a readable safetensors file ({err})") from None


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


# --- checkpoints: a folder with model.safetensors + state.json --------------------------

def save_checkpoint(folder: str | Path, params: dict[str, torch.Tensor], state: dict) -> None:
    """state: JSON-able (task weights, alpha, epoch, model signature)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(folder / "model.safetensors", params, {"format": "alphavil-checkpoint"})
    write_json(folder / "state.json", state)


def load_checkpoint(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: checkpoint folder missing")
    params, _ = load_tensors(folder / "model.safetensors")
    return params, read_json(folder / "state.json")


def checkpoint_digest(folder: str | Path) -> str:
    return file_digest(Path(folder) / "model.safetensors")


def check_compatible(what: str, tensors: dict[str, torch.Tensor],
                     reference: dict[str, torch.Tensor], *, subset: bool,
                     any_float: bool = False) -> None:
    """Refuse a merge of tensors that do not belong to the reference model. any_float:
    deltas may be stored in another float precision (alphavil.delta_dtype); the merge
    casts them to the weight's dtype."""
    extra = sorted(set(tensors) - set(reference))
    if extra:
        raise ArtifactError(f"{what}: has parameters the model does not have: {extra[:5]}")
    if not subset:
        missing = sorted(set(reference) - set(tensors))
        if missing:
            raise ArtifactError(f"{what}: lacks parameters of the model: {missing[:5]}")
    for name, t in tensors.items():
        ref = reference[name]
        dtype_ok = (t.is_floating_point() and ref.is_floating_point()) if any_float \
            else t.dtype == ref.dtype
        if t.shape != ref.shape or not dtype_ok:
            raise ArtifactError(f"{what}: parameter {name!r} is {tuple(t.shape)} {t.dtype}, "
                                f"the model's is {tuple(ref.shape)} {ref.dtype}")


# --- deltas: one safetensors file per (epoch, task) ------------------------------------

def save_delta(path: str | Path, delta: dict[str, torch.Tensor], *, task: str, epoch: str,
               base_digest: str, examples: int) -> None:
    save_tensors(path, delta, {"format": "alphavil-delta", "task": task, "epoch": epoch,
                               "base": base_digest, "examples": str(examples)})


def load_delta(path: str | Path, reference: dict[str, torch.Tensor],
               base_digest: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    delta, meta = load_tensors(path)
    if meta.get("format") != "alphavil-delta":
        raise ArtifactError(f"{path}: not an alphavil delta file (metadata {meta})")
    if meta.get("base") != base_digest:
        raise ArtifactError(f"{path}: delta was computed from checkpoint {meta.get('base')}, "
                            f"but the merge starts from {base_digest}; re-run its fine-tune")
    check_compatible(str(path), delta, reference, subset=True, any_float=True)
    for name, t in delta.items():
        if not torch.isfinite(t).all():
            raise ArtifactError(f"{path}: non-finite values in {name!r}")
    return delta, meta


def check_finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise FloatingPointError(f"{what} is {value}; stopping (try a smaller learning rate)")
    return value
