"""Reading params.yaml (and overlays): YAML with every key once, as UTF-8 text; and the
files the prepare stage will read, checked before it starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from alphavil.config.messages import ParamsError


def _duplicate_keys(node: yaml.Node, path: str = "") -> list[str]:
    """yaml.safe_load keeps the last of two equal keys without a word, so a task or a
    section written twice would silently lose the first one; find them in the node tree."""
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            dotted = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(f"{dotted}: expected each key once in a mapping, "
                                f"got it twice (lines {seen[key]} and {line})")
            seen.setdefault(key, line)
            problems += _duplicate_keys(value_node, dotted)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _duplicate_keys(item, f"{path}[{i}]")
    return problems


def parse_yaml(text: str, source: str = "params.yaml") -> Any:
    try:
        problems = _duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader))
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(err, "problem", None) or str(err)
        raise ParamsError(f"{source}: not valid YAML{where}: "
                          f"{' '.join(str(what).split())}") from None
    if problems:
        raise ParamsError("\n".join(f"{source}: {p}" for p in problems))
    return raw


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content; a missing, non-UTF-8 or malformed file is a ParamsError."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: file not found (run from the repository root)")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ParamsError(f"{path}: expected UTF-8 text, got byte 0x{data[err.start]:02x} at "
                          f"offset {err.start}") from None
    return parse_yaml(text, str(path))


def check_data_source(params) -> None:
    """Files the prepare stage reads must exist before it starts. Only prepare calls
    this: later stages read data/prepared, which a teammate may have pulled from a
    remote without having the source files."""
    from alphavil.data.digits import FASHION_DIR, INSTALLED_BY

    if params.setting == "images":
        return _check_image_paths(params)
    if params.setting != "vision":
        return
    for name, task in params.tasks.items():
        if task.inputs == "fashion":
            if not any((Path(FASHION_DIR) / f"train-images-idx3-ubyte{ext}").is_file()
                       for ext in ("", ".gz")):
                raise ParamsError(f"tasks.{name}.inputs: expected Fashion-MNIST's IDX files "
                                  f"in {FASHION_DIR} for 'fashion', not found; "
                                  f"`{INSTALLED_BY.get(FASHION_DIR, 'make install-fashion')}` "
                                  "installs it")
    if params.data.source != "mnist_idx":
        return
    path = params.data.source_args["path"]  # a required argument: validated
    fix = INSTALLED_BY.get(str(Path(path)))
    fix = f"; `{fix}` installs it" if fix else ""
    if not Path(path).is_dir():
        raise ParamsError(f"data.source_args.path: expected an existing folder with "
                          f"train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] "
                          f"(data.source is mnist_idx), got {path!r}{fix}")
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        if not any((Path(path) / f"{stem}{ext}").is_file() for ext in ("", ".gz")):
            raise ParamsError(f"data.source_args.path: expected {stem}[.gz] in {path!r}, "
                              f"not found{fix}")


# what each image source's path keys must name (alphavil/data/image_sources.py)
IMAGE_PATHS = {"folder": (("path", "dev", "test"), "a folder with one sub-folder of images "
                          "per class", Path.is_dir),
               "files": (("train", "dev", "test"), "a CSV/JSON/parquet file", Path.is_file)}


def _check_image_paths(params) -> None:
    """Every folder or table an image task names exists (an hf task's `name` may be a hub
    name: its loader reports what it cannot load)."""
    found = []
    for name, task in params.tasks.items():
        keys, what, exists = IMAGE_PATHS.get(task.source, ((), "", None))
        for key in keys:
            path = getattr(task, key)
            if path is not None and not exists(Path(path)):
                found.append(f"tasks.{name}.{key}: expected {what}, got {path!r} (not found)")
    if found:
        raise ParamsError("\n".join(found))
