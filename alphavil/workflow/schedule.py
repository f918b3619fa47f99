"""Rewrite the `epochs:` chain in params.yaml: `python -m alphavil.workflow.schedule N`.

DVC templates cannot count, so params.yaml spells the chain out (ep0 <- base, ep1 <- ep0,
...). This rewrites only that block of the text: the rest of the file stays as it is,
comments included (it is not re-dumped from the validated params), and each kept epoch's
overrides too; growing the list adds only new stages, so `dvc repro` runs only new epochs.
Shrinking it also drops the removed epochs' entries from dvc.lock (alphavil.workflow.lockfile),
which DVC would otherwise keep and re-write after every stage.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

from alphavil.workflow import lockfile
from alphavil.config import ParamsError, parse_yaml, validate

_TOP_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:")


def epoch_block(n: int, old: list[dict] | None = None) -> str:
    keep = {e.get("id"): (e.get("overrides") or {}) for e in (old or []) if isinstance(e, dict)}
    lines = ["epochs:"]
    prev = "base"
    for i in range(n):
        eid = f"ep{i}"
        ov = keep.get(eid, {})
        ov_text = yaml.safe_dump(ov, default_flow_style=True).strip() if ov else "{}"
        lines.append(f"  - {{id: {eid}, prev: {prev}, n: {i + 1}, overrides: {ov_text}}}")
        prev = eid
    return "\n".join(lines) + "\n"


def rewrite(path: Path, n: int) -> None:
    if n < 1:
        raise ParamsError(f"epoch count must be >= 1, got {n}")
    text = path.read_text()
    raw = parse_yaml(text, str(path))
    lines = text.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.startswith("epochs:")), None)
    new_block = epoch_block(n, raw.get("epochs"))
    if start is None:
        out = text + ("" if text.endswith("\n") else "\n") + new_block
    else:
        end = start + 1
        while end < len(lines) and not _TOP_KEY.match(lines[end]):
            end += 1
        # keep comment/blank lines that introduce the next key
        while end > start + 1 and lines[end - 1].lstrip().startswith("#"):
            end -= 1
        out = "".join(lines[:start]) + new_block + "".join(lines[end:])
    validate(parse_yaml(out, str(path)), str(path))  # never write a file the pipeline rejects
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(out)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, help="number of αVIL epochs")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--keep-lock", action="store_true",
                    help="leave dvc.lock alone (default: drop entries of removed stages)")
    args = ap.parse_args(argv)
    try:
        rewrite(Path(args.params), args.n)
    except ParamsError as err:
        for line in str(err).splitlines():  # one line per problem
            print(f"error: {line}", file=sys.stderr)
        return 2
    print(f"{args.params}: epochs set to {args.n}")
    root = Path(args.params).resolve().parent
    if not args.keep_lock and (root / "dvc.lock").exists():
        return lockfile.main(["--root", str(root)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
