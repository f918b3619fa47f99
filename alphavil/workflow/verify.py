"""`make verify`: did this machine reproduce the committed results?

    python -m alphavil.workflow.verify [--reference REV]

Compares the workspace's metrics/per_epoch.json (what `dvc repro` just wrote) with the one
committed at REV (default HEAD), method by method and seed by seed, on the final epoch's
target test metric, and prints one of three verdicts (exit status 0, 0, 1):

  EXACT          every record is identical: the artifacts were reproduced bit for bit
                 (what the same CPU kind, torch and settings give: docs/pipeline.md);
  REPRODUCED     not identical, but every method's mean over seeds is within the tolerance
                 of the committed one: what rounding on another CPU does;
  NOT REPRODUCED some method's mean moved further than rounding explains.

The tolerance comes from measured run-to-run variation (docs/pipeline.md,
"Reproducibility"): the same params and seeds under different floating-point rounding
(another CPU kind, another instruction-set path, another thread count) moved single
seeds' final test accuracy with a standard deviation of SIGMA_SEED percentage points. The
mean of n seeds' differences then has a standard deviation of SIGMA_SEED / √n; a method
passes within Z of those. Per-seed differences beyond Z · SIGMA_SEED are listed.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

PER_EPOCH = Path("metrics/per_epoch.json")
# sd of a single seed's final test-accuracy change (percentage points) under another
# rounding, and how many of those a mean may move: docs/pipeline.md, "Reproducibility".
# Measured on the default (seeds 0-4) with ATEN's generic code path against AVX2 on one
# machine: RMS change 1.47 pp for αVIL's seeds (the largest of the four methods; one seed
# moved 2.7 pp), 0.83 pp over all 20 method-seeds. The largest is used for every method.
SIGMA_SEED = 1.5
Z = 3.0


class VerifyError(RuntimeError):
    pass


def finals(records: list[dict], metric: str) -> dict[str, dict[int, float]]:
    """method -> seed -> the last epoch's target test metric, in percentage points."""
    last: dict[tuple[str, int], dict] = {}
    for r in records:
        key = (r["method"], r["seed"])
        if key not in last or r["n"] > last[key]["n"]:
            last[key] = r
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for (method, seed), r in last.items():
        out[method][seed] = 100.0 * float(r["test"][metric])
    return dict(out)


def compare(mine: dict, ref: dict, metric: str, sigma: float = SIGMA_SEED,
            z: float = Z) -> dict:
    """Verdict and per-method numbers for two per_epoch.json documents."""
    if mine == ref:
        return {"verdict": "EXACT", "methods": {}}
    a, b = finals(mine["records"], metric), finals(ref["records"], metric)
    if set(a) != set(b) or any(set(a[m]) != set(b[m]) for m in a):
        raise VerifyError(f"{PER_EPOCH} has methods/seeds {_shape(a)}, the reference "
                          f"{_shape(b)}: run `dvc repro` with the committed params.yaml")
    methods = {}
    ok = True
    for m in b:
        diffs = {s: a[m][s] - b[m][s] for s in b[m]}
        mean = sum(diffs.values()) / len(diffs)
        tol = z * sigma / math.sqrt(len(diffs))
        ok &= abs(mean) <= tol
        methods[m] = {"yours": sum(a[m].values()) / len(diffs),
                      "committed": sum(b[m].values()) / len(diffs), "mean_diff": mean,
                      "tolerance": tol, "within": abs(mean) <= tol,
                      "seeds_beyond": {s: d for s, d in diffs.items() if abs(d) > z * sigma}}
    return {"verdict": "REPRODUCED" if ok else "NOT REPRODUCED", "methods": methods}


def _shape(f: dict) -> dict:
    return {m: sorted(s) for m, s in sorted(f.items())}


def _committed(rev: str) -> dict:
    proc = subprocess.run(["git", "show", f"{rev}:{PER_EPOCH.as_posix()}"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise VerifyError(f"git show {rev}:{PER_EPOCH}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", default="HEAD", help="git revision of the committed run")
    args = ap.parse_args(argv)
    try:
        if not PER_EPOCH.is_file():
            raise VerifyError(f"{PER_EPOCH}: missing; run `dvc repro` first")
        mine, ref = json.loads(PER_EPOCH.read_text()), _committed(args.reference)
        summary = json.loads(Path("metrics/summary.json").read_text())
        result = compare(mine, ref, summary["metric"])
    except (VerifyError, json.JSONDecodeError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    verdict = result["verdict"]
    if verdict == "EXACT":
        print(f"EXACT: {PER_EPOCH} is identical to the one committed at {args.reference}.")
        return 0
    print(f"| method | yours | committed ({args.reference}) | mean diff (pp) | tolerance | ok |")
    print("|---|---|---|---|---|---|")
    for m, r in result["methods"].items():
        print(f"| {m} | {r['yours']:.2f} | {r['committed']:.2f} | {r['mean_diff']:+.2f} | "
              f"±{r['tolerance']:.2f} | {'yes' if r['within'] else 'NO'} |")
        for s, d in r["seeds_beyond"].items():
            print(f"  seed {s}: {d:+.2f} pp (beyond {Z:g} × {SIGMA_SEED} pp)")
    if verdict == "REPRODUCED":
        print(f"REPRODUCED: not bit for bit, but every method's mean is within {Z:g} standard "
              f"deviations of what another rounding moves it (docs/pipeline.md).")
        return 0
    print("NOT REPRODUCED: a method's mean moved further than rounding explains; check "
          "`git status`, `dvc status` and the versions in requirements.txt.")
    return 1


if __name__ == "__main__":
    sys.exit(main())
