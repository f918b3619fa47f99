"""The rows behind the plots, per epoch over seeds: the target's dev/test metric per method,
αVIL's α and weights; and the CSVs `dvc plots show` reads (metrics/plots/)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..artifacts import write_text
from ..config import Params
from .stats import mean_estimated

TARGET_CSV = ["epoch", "dev", "test", "dev_min", "dev_max"]
ALPHA_CSV = ["epoch", "alpha", "weight", "alpha_seeds", "merges_refused"]


def curves(params: Params, records: list[dict], metric: str) -> tuple[dict, dict]:
    """Per method and epoch count n, over seeds: mean dev/test metric and the dev min–max
    (rows as TARGET_CSV); αVIL's α (mean over the seeds that estimated it, None if none
    did), mean weight, how many seeds estimated α and how many merges alpha.guard refused
    (rows as ALPHA_CSV)."""
    acc: dict[str, list[list]] = {}
    for method in params.methods:
        rows = []
        for n in range(len(params.epochs) + 1):
            rs = [r for r in records if r["method"] == method and r["n"] == n]
            dev = [r["dev"][metric] for r in rs]
            rows.append([n, float(np.mean(dev)), float(np.mean([r["test"][metric] for r in rs])),
                         float(np.min(dev)), float(np.max(dev))])
        acc[method] = rows
    aw: dict[str, list[list]] = {}
    if "alphavil" in params.methods:
        for t in params.tasks:
            rows = []
            for e in params.epochs:
                rs = [r for r in records if r["method"] == "alphavil" and r["n"] == e.n]
                alpha, k = mean_estimated([r["alpha"][t] for r in rs])
                rows.append([e.n, alpha, float(np.mean([r["weights"][t] for r in rs])), k,
                             sum(bool(r.get("merge_rejected")) for r in rs)])
            aw[t] = rows
    return acc, aw


def weight_rows(params: Params, records: list[dict]) -> dict[str, list[list]]:
    """αVIL's task weight w per task and epoch count n (0: the initial weights), over seeds:
    rows [n, mean, min, max]."""
    rows: dict[str, list[list]] = {}
    for t in params.tasks:
        rows[t] = []
        for n in range(len(params.epochs) + 1):
            w = [r["weights"][t] for r in records if r["method"] == "alphavil" and r["n"] == n]
            rows[t].append([n, float(np.mean(w)), float(np.min(w)), float(np.max(w))])
    return rows


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    """One CSV for `dvc plots show`: the header, then the rows."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    # None (α not estimated) -> NaN: `dvc plots show` leaves a gap there; an empty cell
    # would reach its Vega-Lite template as "" and be drawn as 0
    w.writerows([["NaN" if v is None else v for v in row] for row in rows])
    write_text(path, buf.getvalue())
