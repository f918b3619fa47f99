"""Stage outputs a test starts from, or damages."""

from __future__ import annotations

from pathlib import Path


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
