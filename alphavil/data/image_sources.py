"""Where the images of a `setting: images` task come from (docs/own-tasks.md).

A task names its `source`; loaders read the task's validated entry (alphavil/config/images.py)
and return, per split the source has, a pool of images (read one at a time, only the drawn
ones are decoded) and their raw labels:

  folder  one sub-folder per class (`path:`; optional `dev:` and `test:` folders laid out the
          same way); the class is the sub-folder's name, file names are sorted
  files   a CSV / JSON / parquet table (`train:`, optional `dev:`, `test:`) with an image-path
          column and a label column; relative paths are read from the table's own folder
  hf      a Hugging Face dataset (text_sources.load_hf_dataset): an image column of images,
          {bytes, path} mappings or paths, and a label column

The class ids are read from the raw labels as in text_sources.files_view (integers as they
are, otherwise the sorted names), or from `classes:`, which groups raw labels into named
classes and drops the rows in none. Torch-free: decoding is PIL's; image_prepare.py resizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from alphavil.data.text_sources import (SourceError, View, _int_label, _str_label, class_names,
                                        file_format, load_hf_dataset)

# what a folder's image files end with (others, e.g. a README, are not images of a class)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm"}


@dataclass
class ImagePool:
    """One split of a source: `read(i)` gives image i as a PIL image; `where(i)` names it."""
    raw: list[Any]
    read: Callable[[int], Any]
    where: Callable[[int], str]

    def __len__(self) -> int:
        return len(self.raw)


def open_image(value: Any, where: str):
    """A PIL image from a path, {bytes, path}, an array or an image; SourceError if the
    value is none of them or the file is not an image."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(value, Image.Image):
        return value
    try:
        if isinstance(value, dict):
            if value.get("bytes"):
                import io

                return Image.open(io.BytesIO(value["bytes"]))
            value = value.get("path")
        if isinstance(value, (str, Path)):
            with Image.open(value) as im:
                im.load()
                return im
        array = np.asarray(value)
        if array.ndim in (2, 3) and array.size:
            return Image.fromarray(array.astype(np.uint8))
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise SourceError(f"{where}: not a readable image ({type(err).__name__}: "
                          f"{' '.join(str(err).split())})") from None
    raise SourceError(f"{where}: expected an image, a path or {{bytes, path}}, got "
                      f"{type(value).__name__}")


def _require(path: str | None, key: str, what: str, folder: bool) -> Path:
    p = Path(path)
    if not (p.is_dir() if folder else p.is_file()):
        raise SourceError(f"{key}: expected {what}, got {path!r} (not found)")
    return p


def _folder_pool(path: str, key: str) -> ImagePool:
    root = _require(path, key, "a folder with one sub-folder of images per class", True)
    items, raw = [], []
    for cls in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in cls.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        items += files
        raw += [cls.name] * len(files)
    if not items:
        raise SourceError(f"{key}: expected a folder with one sub-folder of images per class, "
                          f"found no image files ({sorted(IMAGE_SUFFIXES)}) in sub-folders of "
                          f"{path!r}")
    return ImagePool(raw, lambda i: open_image(items[i], str(items[i])),
                     lambda i: str(items[i]))


def load_folder(spec, key: str) -> dict[str, ImagePool]:
    return {split: _folder_pool(getattr(spec, attr), f"{key}.{attr}")
            for split, attr in (("train", "path"), ("dev", "dev"), ("test", "test"))
            if getattr(spec, attr) is not None}


def load_files(spec, key: str) -> dict[str, ImagePool]:
    from alphavil.data.text_sources import _datasets

    pools = {}
    for split in ("train", "dev", "test"):
        path = getattr(spec, split)
        if path is None:
            continue
        table = _require(path, f"{key}.{split}", "a CSV/JSON/parquet file", False)
        fmt = file_format(path, spec.format)
        d = _datasets().load_dataset(fmt, data_files={"train": path})["train"]
        _columns(d, spec, f"{key}.{split} ({path})")
        paths = [None if p is None else (table.parent / str(p)) for p in d[spec.image]]
        pools[split] = ImagePool(
            list(d[spec.label]), lambda i, paths=paths: open_image(paths[i], str(paths[i])),
            lambda i, paths=paths: str(paths[i]))
    return pools


def _columns(d, spec, where: str) -> None:
    missing = [c for c in (spec.image, spec.label) if c not in d.column_names]
    if missing:
        raise SourceError(f"{where}: no column {missing} (columns: {d.column_names}); set "
                          "`image:` and `label:` to the image and label columns")


def load_hf(spec, key: str) -> dict[str, ImagePool]:
    pools = {}
    for split, d in load_hf_dataset(spec, key).items():
        where = f"{key} ({spec.name} {split})"
        _columns(d, spec, where)
        raw = list(d[spec.label])
        if class_names(d, spec.label):  # ClassLabel: its names, so `classes:` can use them
            names = class_names(d, spec.label)
            raw = [None if r is None or r < 0 else names[r] for r in raw]
        pools[split] = ImagePool(
            raw, lambda i, d=d, w=where: open_image(d[int(i)][spec.image], f"{w} row {i}"),
            lambda i, w=where: f"{w} row {i}")
    return pools


IMAGE_SOURCES: dict[str, Callable[..., dict[str, ImagePool]]] = {
    "folder": load_folder,
    "files": load_files,
    "hf": load_hf,
}


def image_view(spec, pools: dict[str, ImagePool], key: str) -> View:
    """How a task reads class ids off its raw labels: `classes` (name -> raw labels) in
    its order; integer labels 0..C-1 as they are; otherwise the sorted distinct names."""
    values = [r for p in pools.values() for r in p.raw if r is not None]
    seen = {str(v) for v in values}
    if spec.classes is not None:
        lookup = {}
        for name, members in spec.classes.items():
            for m in members:
                if str(m) not in seen:
                    raise SourceError(f"{key}.classes.{name}: {m!r} is not a label of the source "
                                      f"(labels: {sorted(seen)[:12]})")
                if str(m) in lookup:
                    raise SourceError(f"{key}.classes.{name}: {m!r} is already in class "
                                      f"{list(spec.classes)[lookup[str(m)]]!r}")
                lookup[str(m)] = list(spec.classes).index(name)
        return View(tuple(spec.classes), lambda raw: None if raw is None else lookup.get(str(raw)))
    ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values)
    if ints and values and min(values) >= 0:
        names = tuple(str(i) for i in range(int(max(values)) + 1))
        view = View(names, _int_label(len(names)))
    else:
        names = tuple(sorted(seen))
        view = View(names, _str_label(names))
    if len(seen) < 2:
        raise SourceError(f"{key}.label: a classification task needs at least two classes, "
                          f"found {sorted(seen)}")
    return view
