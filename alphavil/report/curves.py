"""The rows behind the plots, per epoch over seeds: the target's dev/test metric per method,
αVIL's α and weights; and the CSVs `dvc plots show` reads (metrics/plots/)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import NamedTuple

import numpy as np

from alphavil.store.artifacts import write_text
from alphavil.config import Params
from alphavil.report.stats import mean_estimated


class TargetRow(NamedTuple):
    """One method's target metric at epoch count n (0: θ_0), over seeds."""
    epoch: int
    dev: float  # mean
    test: float  # mean
    dev_min: float
    dev_max: float


class AlphaRow(NamedTuple):
    """One task's αVIL values after epoch count n, over seeds."""
    epoch: int
    alpha: float | None  # mean over the seeds that estimated α; None where none did
    weight: float  # mean
    alpha_seeds: int  # how many seeds estimated α
    merges_refused: int  # seeds whose merge alpha.guard refused (the same for every task)


class WeightRow(NamedTuple):
    """One task's αVIL weight w at epoch count n (0: the initial weights), over seeds."""
    epoch: int
    mean: float
    low: float  # min over seeds
    high: float  # max over seeds


# the CSV columns are the rows' fields, in order
TARGET_CSV = list(TargetRow._fields)
ALPHA_CSV = list(AlphaRow._fields)


def curves(params: Params, records: list[dict],
           metric: str) -> tuple[dict[str, list[TargetRow]], dict[str, list[AlphaRow]]]:
    """Per method, a TargetRow for every epoch count n; with αVIL, per task an AlphaRow for
    every epoch."""
    acc: dict[str, list[TargetRow]] = {}
    for method in params.methods:
        rows = []
        for n in range(len(params.epochs) + 1):
            rs = [r for r in records if r["method"] == method and r["n"] == n]
            dev = [r["dev"][metric] for r in rs]
            rows.append(TargetRow(n, float(np.mean(dev)),
                                  float(np.mean([r["test"][metric] for r in rs])),
                                  float(np.min(dev)), float(np.max(dev))))
        acc[method] = rows
    aw: dict[str, list[AlphaRow]] = {}
    if "alphavil" in params.methods:
        for t in params.tasks:
            rows = []
            for e in params.epochs:
                rs = [r for r in records if r["method"] == "alphavil" and r["n"] == e.n]
                alpha, k = mean_estimated([r["alpha"][t] for r in rs])
                rows.append(AlphaRow(e.n, alpha, float(np.mean([r["weights"][t] for r in rs])), k,
                                     sum(bool(r.get("merge_rejected")) for r in rs)))
            aw[t] = rows
    return acc, aw


def weight_rows(params: Params, records: list[dict]) -> dict[str, list[WeightRow]]:
    """Per task, αVIL's WeightRow for every epoch count n."""
    return record_weight_rows(records, list(params.tasks))


def record_weight_rows(records: list[dict], tasks: list[str]) -> dict[str, list[WeightRow]]:
    """Per task in `tasks`, αVIL's WeightRow for every epoch count n the records hold (no
    Params: a results folder's per_epoch.json is enough)."""
    ours = [r for r in records if r["method"] == "alphavil"]
    counts = sorted({r["n"] for r in ours})
    rows: dict[str, list[WeightRow]] = {}
    for t in tasks:
        rows[t] = []
        for n in counts:
            w = [r["weights"][t] for r in ours if r["n"] == n]
            rows[t].append(WeightRow(n, float(np.mean(w)), float(np.min(w)), float(np.max(w))))
    return rows


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    """One CSV for `dvc plots show`: the header, then the rows (named rows as their values)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    # None (α not estimated) -> NaN: `dvc plots show` leaves a gap there; an empty cell
    # would reach its Vega-Lite template as "" and be drawn as 0
    w.writerows([["NaN" if v is None else v for v in row] for row in rows])
    write_text(path, buf.getvalue())
