"""Where every artifact lives; dvc.yaml spells the same paths with ${...} templates."""

from __future__ import annotations

from pathlib import Path

DATA = Path("data/prepared")
CHECKED = Path("data/params.checked")  # the check_params stage's constant output
CHECKPOINTS = Path("checkpoints")
DELTAS = Path("deltas")
ALPHAS = Path("alphas")
BASELINES = Path("baselines")
LOGS = Path("logs")
METRICS = Path("metrics")


def base_dir(seed: int) -> Path:
    return CHECKPOINTS / f"s{seed}" / "base"


def checkpoint_dir(method: str, seed: int, epoch: str) -> Path:
    """`epoch` is an epoch id, or 'base' for θ_0 (shared by every method)."""
    if epoch == "base":
        return base_dir(seed)
    if method == "alphavil":
        return CHECKPOINTS / f"s{seed}" / epoch
    return BASELINES / method / f"s{seed}" / epoch


def delta_dir(seed: int, epoch: str) -> Path:
    return DELTAS / f"s{seed}" / epoch


def delta_path(seed: int, epoch: str, task: str) -> Path:
    return delta_dir(seed, epoch) / f"{task}.safetensors"


def alpha_path(seed: int, epoch: str) -> Path:
    return ALPHAS / f"s{seed}" / f"{epoch}.json"


def log_dir(*parts: object) -> Path:
    return LOGS.joinpath(*(str(p) for p in parts))
