"""The prepare stage of `setting: images`: draw each task's train/dev/test images from its
source, bring them to one size and channel count, and write data/prepared/.

Layout: {train,dev,test}.safetensors with `images.<task>` (uint8 [N, C, S, S]: every task
has its own images) and `label.<task>` (int64); meta.json (setting `images`, image_size,
channels, normalise {mean, std}, and per task its classes, sizes and class counts). The
model turns pixels p into (p / 255 - mean) / std per channel (models/multitask.py).

Splits, as for text tasks (text_prepare.py): tasks that read the same images (the same
source options) share one seeded shuffle of them, and each task in params order draws its
dev, then test, then train images from those still unused, so no image is in two tasks'
splits and growing n_train leaves dev and test as they were. A split the source names
itself (a `dev:`/`test:` folder or table, an hf split) is read instead of carving, whole
unless n_dev / n_test is set, by each task on its own (it is never anyone's training data).
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import torch

from alphavil.config import Params
from alphavil.data.image_sources import IMAGE_SOURCES, ImagePool, image_view
from alphavil.data.prepared import SPLITS
from alphavil.data.text_prepare import DRAW_ORDER, _noisy, draw
from alphavil.data.text_sources import SourceError
from alphavil.runtime.seeding import task_rng
from alphavil.runtime.steplog import say
from alphavil.store.artifacts import save_tensors, write_json

# keys of a task that do not change which images it reads (so tasks differing only in
# them share and split one pool)
_NOT_SOURCE = {"classes", "label_noise", "n_train", "n_dev", "n_test", "role"}


def _group_key(spec) -> str:
    keep = {k: v for k, v in spec.model_dump(mode="json", exclude_defaults=True).items()
            if k not in _NOT_SOURCE}
    return json.dumps(keep, sort_keys=True)


def to_array(image, size: int, channels: int, fit: str) -> np.ndarray:
    """uint8 [C, size, size]: grey (L) or RGB, stretched or centre-cropped to the square
    (bilinear, Pillow's antialiasing when shrinking)."""
    from PIL import Image, ImageOps

    image = image.convert("L" if channels == 1 else "RGB")
    if fit == "crop":
        image = ImageOps.fit(image, (size, size), Image.Resampling.BILINEAR)
    else:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _decode(pool: ImagePool, idx: np.ndarray, data) -> np.ndarray:
    out = np.empty((len(idx), data.channels, data.image_size, data.image_size), np.uint8)
    for j, i in enumerate(idx):
        out[j] = to_array(pool.read(int(i)), data.image_size, data.channels, data.fit)
    return out


def select_images(params: Params) -> tuple[dict, dict]:
    """{task: {split: (images, labels)}} and per-task meta.json entries."""
    d, specs = params.data, params.tasks
    groups: dict[str, list[str]] = {}
    for name, spec in specs.items():
        groups.setdefault(_group_key(spec), []).append(name)
    out, info = {}, {}
    for gkey, names in groups.items():
        first = names[0]
        source = specs[first].source
        say(f"prepare: loading images from source {source!r} for task(s) {names}")
        pools = IMAGE_SOURCES[source](specs[first], f"tasks.{first}")
        rng = np.random.default_rng([d.seed, zlib.crc32(gkey.encode())])
        orders = {s: rng.permutation(len(p)) for s, p in sorted(pools.items())}
        used = {s: np.zeros(len(p), dtype=bool) for s, p in pools.items()}
        for name in names:
            spec, key = specs[name], f"tasks.{name}"
            view = image_view(spec, pools, key)
            out[name] = {}
            for split in DRAW_ORDER:
                n = getattr(spec, f"n_{split}")
                strict, src = n is not None, split if split in pools else "train"
                own = src == split and split != "train"  # the source's own dev/test
                if n is None and not own:
                    n = getattr(d, f"n_{split}")
                labels = [view.to_label(r) for r in pools[src].raw]
                mark = np.zeros(len(labels), dtype=bool) if own else used[src]
                idx = draw(labels, orders[src], mark, n, view, f"{key}.n_{split}", strict)
                if not len(idx):
                    raise SourceError(f"{key}: no image left for its {split} split (after the "
                                      "splits of earlier tasks of the same images); lower their "
                                      "n_* or give the task more images")
                y = np.asarray([labels[i] for i in idx], dtype=np.int64)
                out[name][split] = (_decode(pools[src], idx, d), y)
            info[name] = {"source": source, "num_classes": view.num_classes,
                          "label_names": list(view.label_names),
                          "drawn_from": {s: (s if s in pools else "train") for s in SPLITS}}
    return out, info


def normalisation(params: Params, examples: dict) -> dict:
    """Per-channel mean and std (pixels / 255) the model standardises with: those of every
    task's training images for `dataset`, the identity for `unit`."""
    c = params.data.channels
    if params.data.normalise == "unit":
        return {"mean": [0.0] * c, "std": [1.0] * c}
    pixels = np.concatenate([s["train"][0].transpose(1, 0, 2, 3).reshape(c, -1)
                             for s in examples.values()], axis=1) / 255.0
    std = np.maximum(pixels.std(axis=1), 1e-3)  # a constant channel must not divide by 0
    return {"mean": [round(float(m), 6) for m in pixels.mean(axis=1)],
            "std": [round(float(s), 6) for s in std]}


def prepare_images(params: Params, out_dir: str | Path) -> None:
    out_dir, d = Path(out_dir), params.data
    examples, info = select_images(params)
    tensors: dict[str, dict[str, torch.Tensor]] = {s: {} for s in SPLITS}
    for name, splits in examples.items():
        spec = params.tasks[name]
        for split, (images, labels) in splits.items():
            if split == "train":  # dev and test keep measuring the real task
                labels = _noisy(labels, float(spec.label_noise), info[name]["num_classes"],
                                task_rng(d.seed, name))
            tensors[split][f"images.{name}"] = torch.from_numpy(images)
            tensors[split][f"label.{name}"] = torch.from_numpy(labels)
        info[name].update(
            label_noise=float(spec.label_noise),
            sizes={s: int(len(y)) for s, (_, y) in splits.items()},
            class_counts={s: np.bincount(y, minlength=info[name]["num_classes"]).tolist()
                          for s, (_, y) in splits.items()})
    if out_dir.exists():
        shutil.rmtree(out_dir)
    for split in SPLITS:
        save_tensors(out_dir / f"{split}.safetensors", tensors[split], {"split": split})
    write_json(out_dir / "meta.json", {
        "setting": "images", "image_size": d.image_size, "channels": d.channels,
        "normalise": normalisation(params, examples), "tasks": info})
    say("prepare: " + "; ".join(f"{t} {m['sizes']['train']}/{m['sizes']['dev']}/"
                                f"{m['sizes']['test']}" for t, m in info.items())
        + f" images (train/dev/test) of {d.channels}x{d.image_size}x{d.image_size}")
