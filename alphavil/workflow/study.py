"""Run a named configuration from configs/ as a DVC experiment.

    python -m alphavil.workflow.study configs/harmful.yaml [--name NAME]
    python -m alphavil.workflow.study configs/target-only.yaml configs/heldout-seeds.yaml

A config file is an overlay: each of its top-level keys replaces that key of params.yaml
as a whole (no deep merge, so what a study runs is readable in one file). Several overlays
must set disjoint keys, so each key still comes from exactly one file. The merged
params are validated before anything runs (alphavil.workflow.safety: also what DVC renders from
them, before DVC acts on it), written to params.yaml with every default filled in (so
an overlay may leave out what params.yaml's defaults cover, and every key a stage
declares to DVC is in the file) and run with
`dvc exp run -n NAME`, exactly as `dvc exp run -S key=value` would: the workspace then
holds the study's params and results, and `dvc exp show` lists it beside other runs.
Return to the default with `git checkout params.yaml && dvc checkout`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

from alphavil.workflow import safety
from alphavil.store.artifacts import write_text
from alphavil.config import ParamsError, check_data_source, read_yaml, validate

HEADER = ("# Written by `python -m alphavil.workflow.study {config}`: params.yaml with the overlays'\n"
          "# top-level keys replaced. Back to the default: git checkout params.yaml && dvc checkout\n")


def overlay(base: dict, config: dict, source: str) -> dict:
    if not isinstance(config, dict) or not config:
        raise ParamsError(f"{source}: expected a non-empty mapping of params.yaml keys")
    unknown = sorted(set(config) - set(base) - {"setting"})
    if unknown:
        raise ParamsError(f"{source}: keys {unknown} are not in params.yaml "
                          f"(known: {sorted(base)})")
    return {**base, **config}


def merged_params(config_paths: Path | list[Path],
                  params_path: Path = Path("params.yaml")) -> dict:
    """params.yaml with the overlays' keys replaced, as written in the files; a ParamsError
    if the result is not valid."""
    merged, source = _merge(config_paths, params_path)
    validate(merged, source)
    return merged


def _merge(config_paths: Path | list[Path], params_path: Path) -> tuple[dict, str]:
    configs = [config_paths] if isinstance(config_paths, Path) else list(config_paths)
    for path in [*configs, params_path]:
        if not path.is_file():
            raise ParamsError(f"{path}: file not found")
    merged = read_yaml(params_path)
    set_by: dict[str, Path] = {}
    for path in configs:
        config = read_yaml(path)
        merged = overlay(merged, config, str(path))
        clash = sorted(k for k in config if k in set_by)
        if clash:
            raise ParamsError(f"{path}: keys {clash} are also set by {set_by[clash[0]]}; "
                              f"overlays run together must set different keys")
        set_by.update(dict.fromkeys(config, path))
    return merged, f"{' + '.join(map(str, configs))} over {params_path}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", type=Path, nargs="+", help="overlay file(s) in configs/")
    ap.add_argument("--name", help="experiment name (default: the config files' stems)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--no-run", action="store_true",
                    help="only write the merged params.yaml")
    args = ap.parse_args(argv)
    try:
        params = validate(*_merge(args.config, args.params))
        # source files prepare will read (e.g. a Debian data package): say so now, with
        # the command that installs them, rather than after DVC has started
        check_data_source(params)
    except ParamsError as err:
        for line in str(err).splitlines():  # one line per problem
            print(f"error: {line}", file=sys.stderr)
        return 2
    text = HEADER.format(config=" ".join(map(str, args.config))) + yaml.safe_dump(
        params.dump(), sort_keys=False)
    before = args.params.read_text()
    write_text(args.params, text)
    if args.no_run:
        return 0
    try:  # what DVC will render from the written file, before DVC acts on it
        safety.check()
    except ParamsError as err:
        write_text(args.params, before)
        print(f"error: {err}", file=sys.stderr)
        return 2
    name = args.name or "-".join(c.stem for c in args.config)
    proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "run", "-n", name])
    if proc.returncode != 0:
        return proc.returncode
    summary = Path("metrics/summary.md")
    if summary.is_file():
        print(summary.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
