"""Drop `dvc.lock` entries of stages that `dvc.yaml` no longer defines.

DVC never prunes them (iterative/dvc#5293): shortening `epochs:` or `seeds:` leaves the
removed stages' entries in the lock, and DVC re-parses and rewrites the whole lock after
every stage it runs, so each stale entry slows every later stage (docs/performance.md).
Dropping them loses nothing: a stage that comes back is restored from DVC's run cache.

    python -m alphavil.workflow.lockfile            # prune ./dvc.lock
    python -m alphavil.workflow.lockfile --dry-run  # list what would go
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path


def defined_stages(root: Path) -> set[str]:
    """Names of the stages the root dvc.yaml defines with the current params."""
    from dvc.repo import Repo

    dvcfile = (root / "dvc.yaml").resolve()
    with Repo(str(root)) as repo:
        return {s.name for s in repo.index.stages
                if getattr(s, "dvcfile", None) is not None
                and Path(s.dvcfile.path).resolve() == dvcfile}


def prune(root: Path, dry_run: bool = False) -> list[str]:
    """Remove stale entries from root/dvc.lock; returns their names in lock order."""
    # DVC's own round-trip parser and dumper, so kept entries keep DVC's exact layout
    from dvc.utils.serialize import dumps_yaml, parse_yaml_for_update

    lock = root / "dvc.lock"
    if not lock.exists():
        return []
    data = parse_yaml_for_update(lock.read_text(), str(lock))
    stages = data.get("stages") or {}
    keep = defined_stages(root)
    stale = [name for name in stages if name not in keep]
    if stale and not dry_run:
        for name in stale:
            del stages[name]
        tmp = lock.with_name(lock.name + ".tmp")
        tmp.write_text(dumps_yaml(data))
        tmp.replace(lock)
    return stale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=".", help="repository root holding dvc.yaml")
    ap.add_argument("--dry-run", action="store_true",
                    help="list every stale entry, keep them")
    args = ap.parse_args(argv)
    from dvc.exceptions import DvcException

    try:
        stale = prune(Path(args.root), dry_run=args.dry_run)
    except DvcException as err:  # e.g. dvc.yaml does not resolve with these params
        print(f"error: {Path(args.root) / 'dvc.yaml'}: {err}", file=sys.stderr)
        return 2
    verb = "would drop" if args.dry_run else "dropped"
    names = describe(stale, None if args.dry_run else 10)
    print(f"dvc.lock: {verb} {len(stale)} entr{'y' if len(stale) == 1 else 'ies'} of "
          f"stages no longer in dvc.yaml" + (f": {names}" if stale else ""))
    return 0


def describe(names: list[str], limit: int | None) -> str:
    """The stage names, or past `limit` a count per stage (`finetune ×280, ...`): a lock
    left by several experiments can hold hundreds of stale entries (--dry-run lists all)."""
    if limit is None or len(names) <= limit:
        return ", ".join(names)
    counts = Counter(name.split("@")[0] for name in names)
    return ", ".join(f"{stage} ×{n}" for stage, n in counts.items())


if __name__ == "__main__":
    sys.exit(main())
