"""What the pipeline's stages read back from each other's artifacts, checked before use:
the task weights and α in a checkpoint's state.json, the α file estimate_alpha writes,
the deltas of an epoch, a baseline's divergence mark. Each wrong entry stops the stage
that reads it with an ArtifactError naming the file and the key (artifacts.py reads and
writes the files)."""

from __future__ import annotations

from pathlib import Path

from alphavil.store import layout
from alphavil.store.artifacts import (ArtifactError, check_task_values, field_error, is_number,
                                      read_json)
from alphavil.config import Params
from alphavil.methods.deltas import weight_scaling


def check_weights(state: dict, params: Params, folder: Path) -> None:
    """The task weights an epoch starts from, as the previous merge wrote them."""
    where = folder / "state.json"
    weights = check_task_values(where, "weights", state.get("weights"), list(params.tasks))
    for t, w in weights.items():
        try:  # the weight rule of the fine-tunes this epoch will run
            weight_scaling(w, 1.0, params.alphavil.weight_mode)
        except ValueError as err:
            raise ArtifactError(f"{where}: weight of task {t!r}: {err}") from None


def delta_paths(params: Params, seed: int, epoch_id: str) -> dict[str, Path]:
    paths = {t: layout.delta_path(seed, epoch_id, t) for t in params.tasks}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise ArtifactError(f"missing deltas {missing}: run the epoch's finetune stages first")
    return paths


def read_alpha_record(path: Path, epoch_id: str, digest: str, tasks: list[str]) -> dict:
    """The α file estimate_alpha wrote for this epoch from this θ, checked entry by entry."""
    record = read_json(path)
    if record.get("epoch") != epoch_id:
        raise field_error(path, "epoch", repr(epoch_id), record.get("epoch"))
    if record.get("base") != digest:
        raise ArtifactError(f"{path}: α was fitted on checkpoint {record.get('base')}, "
                            f"not {digest}; re-run estimate_alpha")
    check_task_values(path, "alpha", record.get("alpha"), tasks, nullable=True)
    guard = record.get("guard", {})
    if not isinstance(guard, dict):
        raise field_error(path, "guard", "an object", guard)
    if guard:
        if not isinstance(guard.get("accepted"), bool):
            raise field_error(path, "guard.accepted", "true or false", guard.get("accepted"))
        for key in ("dev_loss_fitted", "dev_loss_theta"):
            if not is_number(guard.get(key)):
                raise field_error(path, f"guard.{key}", "a number", guard.get(key))
    return record


def check_reported_state(state: dict, params: Params, folder: Path, epoch_id: str) -> None:
    """What the report reads from an αVIL checkpoint's state: w (and α) per task and
    whether the guard refused the merge."""
    check_weights(state, params, folder)
    if epoch_id != "base":
        check_task_values(folder / "state.json", "alpha", state.get("alpha"),
                          list(params.tasks), nullable=True)
    if not isinstance(state.get("merge_rejected", False), bool):
        raise field_error(folder / "state.json", "merge_rejected", "true or false",
                          state["merge_rejected"])


def diverged_epoch(state: dict, folder: Path) -> str | None:
    """The epoch id where a baseline diverged (train.on_divergence: mark), or None."""
    d = state.get("diverged")
    if d is None:
        return None
    if not isinstance(d, dict) or not isinstance(d.get("epoch"), str):
        raise field_error(folder / "state.json", "diverged", "{epoch: <epoch id>, error: ...}", d)
    return d["epoch"]
