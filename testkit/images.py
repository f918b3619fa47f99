"""Tiny image data sets in each format `setting: images` reads (written here, in a temporary
folder), and a complete images params dict over them. Each class has its own brightness
pattern, so a model can learn the classes in a few steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _image(cls: int, i: int, size: tuple[int, int], mode: str, rng) -> "Image":
    from PIL import Image

    h, w = size
    base = np.zeros((h, w), np.float64)
    base[:, : w * (cls + 1) // 4] = 200.0  # class c: the left (c+1)/4 of the image is bright
    pixels = np.clip(base + rng.normal(0, 20, (h, w)), 0, 255).astype(np.uint8)
    if mode == "RGB":
        pixels = np.stack([pixels, pixels[::-1], 255 - pixels], axis=-1)
    return Image.fromarray(pixels, mode="L" if mode == "L" else None).convert(mode)


def write_folder(folder: Path, classes=("a", "b", "c"), per_class: int = 12,
                 size: tuple[int, int] = (20, 14), mode: str = "L", seed: int = 0) -> Path:
    """folder/<class>/<i>.png, images of `size` (h, w) in PIL `mode` (L, RGB, RGBA)."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            _image(c, i, size, mode, rng).save(folder / name / f"{i:03d}.png")
    return folder


def write_table(path: Path, n: int = 36, classes: int = 3, seed: int = 0,
                image_col: str = "file", label_col: str = "y") -> Path:
    """A CSV (or .parquet / .json by suffix) of relative image paths and integer labels,
    the images in path's folder under img/."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    (path.parent / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        c = i % classes
        name = f"img/{i:03d}.png"
        _image(c, i, (16, 16), "RGB", rng).save(path.parent / name)
        rows.append({image_col: name, label_col: c})
    frame = pd.DataFrame(rows)
    {".csv": lambda: frame.to_csv(path, index=False),
     ".parquet": lambda: frame.to_parquet(path, index=False),
     ".json": lambda: frame.to_json(path, orient="records", lines=True)}[path.suffix]()
    return path


def write_hf_saved(folder: Path, per_split: dict[str, int] | None = None, seed: int = 0) -> Path:
    """A DatasetDict saved with save_to_disk: an Image column `img`, a ClassLabel `animal`."""
    import datasets

    rng = np.random.default_rng(seed)
    names = ["cat", "dog"]
    features = datasets.Features({"img": datasets.Image(),
                                  "animal": datasets.ClassLabel(names=names)})
    out = {}
    for split, n in (per_split or {"train": 24, "validation": 8, "test": 8}).items():
        out[split] = datasets.Dataset.from_dict(
            {"img": [_image(i % 2, i, (12, 12), "L", rng) for i in range(n)],
             "animal": [i % 2 for i in range(n)]}, features=features)
    datasets.DatasetDict(out).save_to_disk(str(folder))
    return folder


def images_raw(tasks: dict, target: str, **over) -> dict:
    """A complete `setting: images` params dict at test scale."""
    raw = {
        "setting": "images",
        "seeds": [0],
        "target": target,
        "tasks": tasks,
        "data": {"seed": 0, "image_size": 12, "channels": 1, "n_train": 12, "n_dev": 6,
                 "n_test": 6},
        "model": {"kind": "cnn", "channels": [4], "hidden": 8},
        "train": {"optimizer": "adam", "lr": 0.003, "batch_size": 8},
        "base": {"warmup_steps": 0},
        "alphavil": {"sample_ratio": 1.0, "weight_rule": "additive", "weight_floor": 0.0},
        "alpha": {"init": 1.0, "steps": 2, "lr": 0.05, "optimizer": "adam", "batch_size": 16},
        "baselines": ["single_task"],
        "epochs": [{"id": "ep0", "prev": "base", "n": 1, "overrides": {}}],
    }
    for k, v in over.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) and isinstance(raw.get(k), dict) \
            and k != "tasks" else v
    return raw
