"""MultiMNIST: two different digits per image, one toward the top-left and one toward
the bottom-right of a square canvas, overlapping, then resized (Sabour et al. 2017;
Sener & Koltun 2018). Splits are composed from disjoint pools of source digits, so no
dev or test digit is ever seen in training."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from alphavil.config import Params, ParamsError
from alphavil.data.prepared import SPLITS
from alphavil.data.tasks import TASK_LABELS, make_labels
from alphavil.runtime.seeding import task_rng
from alphavil.store.artifacts import save_tensors, write_json



@dataclass
class ComposedSplit:
    images: np.ndarray   # uint8 [N, 1, S, S]
    left: np.ndarray     # int64 [N] class of the top-left digit
    right: np.ndarray    # int64 [N] class of the bottom-right digit
    left_src: np.ndarray  # int64 [N] index of the source digit (for disjointness checks)
    right_src: np.ndarray


def split_pools(labels: np.ndarray, fractions: dict[str, float],
                rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Disjoint, class-stratified pools of source-digit indices, one per split."""
    pools: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for cls in range(10):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        start = 0
        for split in SPLITS:
            n = int(np.floor(fractions[split] * len(idx)))
            pools[split].append(idx[start:start + n])
            start += n
    out = {s: np.sort(np.concatenate(p)) for s, p in pools.items()}
    for split, pool in out.items():
        present = set(labels[pool].tolist())
        if len(present) < 2:
            raise ParamsError(f"data.digit_split.{split}: the pool has {len(pool)} digits of "
                             f"{len(present)} class(es); MultiMNIST needs two different classes")
    return out


def compose(digits: np.ndarray, labels: np.ndarray, pool: np.ndarray, n: int,
            rng: np.random.Generator, canvas: int, jitter: int, size: int) -> ComposedSplit:
    left_src = pool[rng.integers(0, len(pool), size=n)]
    right_src = pool[rng.integers(0, len(pool), size=n)]
    # Redraw the right digit until its class differs from the left one.
    same = labels[left_src] == labels[right_src]
    while same.any():
        right_src[same] = pool[rng.integers(0, len(pool), size=int(same.sum()))]
        same = labels[left_src] == labels[right_src]

    far = canvas - 28
    offsets = rng.integers(0, jitter + 1, size=(n, 4))
    images = np.zeros((n, canvas, canvas), dtype=np.uint8)
    for i in range(n):
        r, c = offsets[i, 0], offsets[i, 1]
        images[i, r:r + 28, c:c + 28] = digits[left_src[i]]
        r, c = far - offsets[i, 2], far - offsets[i, 3]
        np.maximum(images[i, r:r + 28, c:c + 28], digits[right_src[i]],
                   out=images[i, r:r + 28, c:c + 28])
    if size != canvas:
        t = torch.from_numpy(images).float()[:, None]
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)
        images_out = t.round().clamp(0, 255).to(torch.uint8).numpy()
    else:
        images_out = images[:, None]
    return ComposedSplit(images=images_out, left=labels[left_src].astype(np.int64),
                         right=labels[right_src].astype(np.int64),
                         left_src=left_src.astype(np.int64), right_src=right_src.astype(np.int64))


def _n(data, split: str) -> int:
    return getattr(data, f"n_{split}")


def build(digits: np.ndarray, labels: np.ndarray, data) -> dict[str, ComposedSplit]:
    """The shared splits of the vision data section `data` (config.vision.VisionData)."""
    rng = np.random.default_rng(data.seed)
    pools = split_pools(labels, data.digit_split.model_dump(), rng)
    return {split: compose(digits, labels, pools[split], _n(data, split), rng,
                           *_compose_args(data))
            for split in SPLITS}


# --- a task's own images (params.yaml tasks.<name>.n_train / inputs) -------------------

# Streams of a task's random generator, one per use, so that adding a use to a task never
# changes what another use draws (stream 0, no suffix, is its label noise: data.py).
PERMUTE, EXTRA, FASHION = 1, 2, 3


def _cat(a: ComposedSplit, b: ComposedSplit | None, n: int) -> ComposedSplit:
    """The first n examples of a, then b's."""
    return ComposedSplit(**{f.name: np.concatenate([getattr(a, f.name)[:n]]
                                                   + ([getattr(b, f.name)] if b else []))
                            for f in fields(ComposedSplit)})


def _compose_args(data) -> tuple[int, int, int]:
    return data.canvas, data.jitter, data.image_size


def task_splits(digits: np.ndarray, labels: np.ndarray, data, tasks: dict,
                shared: dict[str, ComposedSplit]) -> dict[str, dict[str, ComposedSplit]]:
    """task -> split -> its own composed split, for the tasks that do not simply read the
    shared splits (default n_train and inputs: none, so the default prepares what it
    always did). The shared splits are never redrawn: dev and test stay as they are.

    n_train: the first n shared training images, so a small target trains on a subset
    of what the other tasks see; past the shared split's end, more images composed from
    the same pool of training digits with the task's own random stream.
    inputs permuted: one fixed pixel permutation per task, on all three of its splits.
    inputs fashion: all three splits composed from Fashion-MNIST items instead."""
    seed, out, fractions = data.seed, {}, data.digit_split.model_dump()
    for name, spec in tasks.items():
        n = spec.n_train if spec.n_train is not None else data.n_train
        if spec.inputs == "fashion":
            from alphavil.data.digits import FASHION_DIR, load_digits

            items, item_labels = load_digits("mnist_idx", {"path": FASHION_DIR})
            rng = task_rng(seed, name, FASHION)
            pools = split_pools(item_labels, fractions, rng)
            own = {split: compose(items, item_labels, pools[split],
                                  n if split == "train" else _n(data, split), rng,
                                  *_compose_args(data)) for split in SPLITS}
        elif n != len(shared["train"].left) or spec.inputs == "permuted":
            have, more = len(shared["train"].left), None
            if n > have:
                pools = split_pools(labels, fractions,
                                    np.random.default_rng(seed))  # the same pools as build
                more = compose(digits, labels, pools["train"], n - have,
                               task_rng(seed, name, EXTRA), *_compose_args(data))
            own = {**shared, "train": _cat(shared["train"], more, n)}
        else:
            continue
        if spec.inputs == "permuted":
            side = own["train"].images.shape[-1]
            perm = task_rng(seed, name, PERMUTE).permutation(side * side)
            own = {split: ComposedSplit(**{**vars(c), "images": c.images.reshape(
                len(c.images), -1)[:, perm].reshape(c.images.shape)})
                   for split, c in own.items()}
        out[name] = own
    return out


def save_prepared(out_dir: str | Path, splits: dict[str, ComposedSplit], params: Params,
                  own: dict[str, dict[str, ComposedSplit]] | None = None) -> None:
    """Label noise is applied to the training split only: dev and test keep measuring the
    real task, so α estimation and reported accuracy are never scored on noise.
    `own`: task -> split -> that task's own images (multimnist.task_splits)."""
    own = own or {}
    out_dir = Path(out_dir)
    data_seed = params.data.seed
    for split, comp in splits.items():
        tensors = {
            "images": torch.from_numpy(comp.images),
            "left": torch.from_numpy(comp.left),
            "right": torch.from_numpy(comp.right),
            "left_src": torch.from_numpy(comp.left_src),
            "right_src": torch.from_numpy(comp.right_src),
        }
        for name, spec in params.tasks.items():
            task_comp = own.get(name, {}).get(split, comp)
            if task_comp is not comp:
                tensors[f"images.{name}"] = torch.from_numpy(task_comp.images)
            noise = spec.label_noise if split == "train" else 0.0
            labels = make_labels(spec.label, task_comp.left, task_comp.right, noise,
                                 task_rng(data_seed, name))
            tensors[f"label.{name}"] = torch.from_numpy(labels)
        save_tensors(out_dir / f"{split}.safetensors", tensors, {"split": split})
    write_json(out_dir / "meta.json", {
        "setting": "vision",
        "tasks": {name: {"label": s.label, "label_noise": s.label_noise,
                         "num_classes": TASK_LABELS[s.label].num_classes,
                         # only where set: the default's meta.json stays as it was
                         **({"n_train": int(len(own[name]["train"].left))}
                            if name in own else {}),
                         **({"inputs": s.inputs} if s.inputs != "shared" else {})}
                  for name, s in params.tasks.items()},
        "sizes": {split: int(len(c.left)) for split, c in splits.items()},
        "image_size": int(next(iter(splits.values())).images.shape[-1]),
    })
