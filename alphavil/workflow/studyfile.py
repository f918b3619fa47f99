"""Overlays and study files: what a study runs, read from committed files only.

An overlay (configs/*.yaml) replaces whole top-level keys of params.yaml; several overlays
must set disjoint keys. A study file (studies/<name>.yaml) names everything a study needs:

    overlays: [configs/harmful.yaml]     # optional, applied in order over the defaults
    seeds: [5, 6, 7]                     # model seeds: one DVC experiment each
    data_seed: 0                         # data.seed: composition and splits, fixed
    baselines: [single_task, uniform, diw]
    set: {train.lr: 0.003}               # optional: dotted params keys, applied last

over the params.yaml committed at HEAD (git show HEAD:params.yaml), never the workspace's
file, which `python -m alphavil.workflow.study CONFIG` and the queue rewrite. Commands that
start several runs from overlays or a study file (alphavil/workflow/lrgrid.py) take them
through `committed_run_params`: every file committed as it is, over HEAD's params.yaml.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

from alphavil.config import Params, ParamsError, parse_yaml, read_yaml, validate

STUDY_KEYS = {"overlays", "seeds", "data_seed", "baselines", "set"}
REQUIRED = ("seeds", "data_seed", "baselines")
# a study's name becomes part of DVC experiment names (git refs) and of results/<name>
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,60}")


def overlay(base: dict, config: dict, source: str) -> dict:
    if not isinstance(config, dict) or not config:
        raise ParamsError(f"{source}: expected a non-empty mapping of params.yaml keys")
    unknown = sorted(set(config) - set(base) - {"setting"})
    if unknown:
        raise ParamsError(f"{source}: keys {unknown} are not in params.yaml "
                          f"(known: {sorted(base)})")
    return {**base, **config}


def merge(config_paths: Path | list[Path], params_path: Path | None = None,
          base: dict | None = None) -> tuple[dict, str, dict[str, Path]]:
    """The base params (params_path's, or `base`) with the overlays' keys replaced; the
    merged dict, a description of its source and which overlay set each key."""
    configs = [config_paths] if isinstance(config_paths, Path) else list(config_paths)
    for path in [*configs, *([params_path] if base is None else [])]:
        if not path.is_file():
            raise ParamsError(f"{path}: file not found")
    merged = read_yaml(params_path) if base is None else base
    set_by: dict[str, Path] = {}
    for path in configs:
        config = read_yaml(path)
        merged = overlay(merged, config, str(path))
        clash = sorted(k for k in config if k in set_by)
        if clash:
            raise ParamsError(f"{path}: keys {clash} are also set by {set_by[clash[0]]}; "
                              f"overlays run together must set different keys")
        set_by.update(dict.fromkeys(config, path))
    over = params_path if base is None else "the committed params.yaml"
    return merged, f"{' + '.join(map(str, configs))} over {over}", set_by


def merged_params(config_paths: Path | list[Path],
                  params_path: Path = Path("params.yaml")) -> dict:
    """params.yaml with the overlays' keys replaced, as written in the files; a ParamsError
    if the result is not valid."""
    merged, source, _ = merge(config_paths, params_path)
    validate(merged, source)
    return merged


def committed_params(root: Path = Path(".")) -> dict:
    """params.yaml as committed at HEAD in the repository at `root`."""
    proc = subprocess.run(["git", "-C", str(root), "show", "HEAD:./params.yaml"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ParamsError("params.yaml: not committed at git HEAD; a study runs over the "
                          "committed defaults (commit params.yaml first)")
    return parse_yaml(proc.stdout, "HEAD:params.yaml")


def _set_dotted(params: dict, key: str, value, source: str) -> None:
    *parents, leaf = key.split(".")
    node = params
    for i, part in enumerate(parents):
        node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise ParamsError(f"{source}: set.{key}: {'.'.join(parents[:i + 1])} is not a "
                              "section of params.yaml")
    if leaf not in node:
        raise ParamsError(f"{source}: set.{key}: not a params.yaml key")
    node[leaf] = value


def study_params(path: Path, root: Path = Path(".")) -> tuple[str, Params]:
    """The study's name (the file's stem) and its validated, default-filled params over
    the committed defaults, with every seed of the study."""
    source = str(path)
    if not NAME.fullmatch(path.stem):
        raise ParamsError(f"{source}: the file name must be letters, digits, - or _ "
                          "(it names the DVC experiments and results/<name>)")
    spec = read_yaml(path)
    if not isinstance(spec, dict):
        raise ParamsError(f"{source}: expected a mapping with keys {sorted(STUDY_KEYS)}")
    unknown = sorted(set(spec) - STUDY_KEYS)
    missing = [k for k in REQUIRED if k not in spec]
    if unknown or missing:
        raise ParamsError(f"{source}: " + (f"unknown keys {unknown} (expected "
                          f"{sorted(STUDY_KEYS)})" if unknown else f"missing keys {missing}"))
    overlays = spec.get("overlays") or []
    if not isinstance(overlays, list) or not all(isinstance(o, str) for o in overlays):
        raise ParamsError(f"{source}: overlays: expected a list of paths in configs/")
    merged, _, set_by = merge([root / o for o in overlays], base=committed_params(root))
    merged = copy.deepcopy(merged)
    for key in ("seeds", "baselines"):
        if key in set_by:
            raise ParamsError(f"{source}: {key} is also set by {set_by[key]}; a study gives "
                              f"its own {key}")
        merged[key] = spec[key]
    if not isinstance(merged.get("data"), dict):
        raise ParamsError(f"{source}: data: expected a section of params.yaml")
    merged["data"] = {**merged["data"], "seed": spec["data_seed"]}
    extra = spec.get("set") or {}
    if not isinstance(extra, dict):
        raise ParamsError(f"{source}: set: expected a mapping of dotted params keys to values")
    for key, value in extra.items():
        if str(key).split(".")[0] in ("seeds", "baselines") or key == "data.seed":
            raise ParamsError(f"{source}: set.{key}: give it as the study's own key")
        _set_dotted(merged, str(key), value, source)
    params = validate(merged, source)
    if not params.seeds:
        raise ParamsError(f"{source}: seeds: expected at least one seed")
    return path.stem, params


def require_committed(path: Path, root: Path = Path(".")) -> None:
    """`path` is committed at HEAD exactly as it is in the workspace: what a run is started
    from can be read back from git."""
    proc = subprocess.run(["git", "-C", str(root), "show", f"HEAD:./{path}"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ParamsError(f"{path}: not committed at git HEAD; commit it first (runs are "
                          "started from committed files only)")
    if (root / path).read_text() != proc.stdout:
        raise ParamsError(f"{path}: differs from its version at git HEAD; commit it first "
                          "(runs are started from committed files only)")


def committed_run_params(paths: list[Path], root: Path = Path(".")) -> Params:
    """What a run started from these files runs: one study file (studies/NAME.yaml, with its
    baselines, data_seed and `set`) or overlays (configs/*.yaml) over the params.yaml
    committed at HEAD; every file must be committed as it is (require_committed)."""
    for path in paths:
        require_committed(path, root)
    if any(path.parent.name == "studies" for path in paths):
        if len(paths) != 1:
            raise ParamsError(f"{' '.join(map(str, paths))}: a study file is given alone "
                              "(it names its own overlays)")
        return study_params(paths[0], root)[1]
    merged, source, _ = merge([root / p for p in paths], base=committed_params(root))
    return validate(merged, source.replace("the committed", "HEAD's"))
