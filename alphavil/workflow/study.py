"""Run a named configuration from configs/ as a DVC experiment.

    python -m alphavil.workflow.study configs/harmful.yaml [--name NAME]
    python -m alphavil.workflow.study configs/target-only.yaml configs/heldout-seeds.yaml
    python -m alphavil.workflow.study run studies/heldout.yaml [-j 2]   (alphavil/workflow/studyrun.py)

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
from alphavil.config import ParamsError, check_data_source, validate
from alphavil.workflow.studyfile import merge

HEADER = ("# Written by `python -m alphavil.workflow.study {config}`: params.yaml with the "
          "overlays'\n# top-level keys replaced. Back to the default: git checkout params.yaml "
          "&& dvc checkout\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:  # a committed study file: alphavil/workflow/studyrun.py
        from alphavil.workflow import studyrun

        return studyrun.main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", type=Path, nargs="+", help="overlay file(s) in configs/")
    ap.add_argument("--name", help="experiment name (default: the config files' stems)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--no-run", action="store_true",
                    help="only write the merged params.yaml")
    args = ap.parse_args(argv)
    try:
        merged, source, _ = merge(args.config, args.params)
        params = validate(merged, source)
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
