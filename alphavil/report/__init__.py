"""Turn per-checkpoint evaluations into the metrics, tables and plots a researcher reads.

metrics/summary.json  compact numbers for `dvc exp show` (means over seeds), the verdict
                      per auxiliary task (verdict.py)
metrics/summary.md    the comparison table, per-seed values, paired tests
metrics/per_epoch.json every (method, seed, epoch) evaluation
metrics/plots/        CSVs for `dvc plots show`, curves.png (the README's) and weights.png
"""

from __future__ import annotations

from pathlib import Path

from alphavil.store import layout
from alphavil.store.artifacts import write_json, write_text
from alphavil.config import Params
from alphavil.report.curves import (ALPHA_CSV, TARGET_CSV, AlphaRow, TargetRow, WeightRow, curves,
                                    weight_rows, write_csv)
from alphavil.report.plots import (REFUSED_LABEL, curves_figure, data_range, save_png, task_labels,
                                   verdict_labels, weights_figure, weights_png)
from alphavil.report.stats import (SAME, holm, mean_estimated, mean_std, paired_comparison,
                                   ranking_score)
from alphavil.report.summary import aux_roles, primary_metric, summarise
from alphavil.report.verdict import cumulative_alpha, neutral_alpha, verdict
from alphavil.report.tables import alpha_cell, comparison_lines, fmt, fmt_p, markdown

__all__ = ["ALPHA_CSV", "AlphaRow", "REFUSED_LABEL", "SAME", "TARGET_CSV", "TargetRow", "WeightRow",
           "alpha_cell", "aux_roles", "comparison_lines", "cumulative_alpha", "curves",
           "curves_figure", "data_range", "fmt", "fmt_p", "holm", "markdown", "mean_estimated",
           "mean_std", "neutral_alpha", "paired_comparison", "primary_metric", "ranking_score",
           "save_png", "summarise", "task_labels", "verdict", "verdict_labels", "weight_rows",
           "weights_figure", "weights_png", "write_csv", "write_reports"]


def majority_share(labels) -> float | None:
    """The fraction of `labels` in their most frequent class: the accuracy of a model that
    always answers it. None for a regression target (float labels)."""
    if labels.dtype.is_floating_point or not len(labels):
        return None
    return float(labels.bincount().max()) / len(labels)


def write_reports(params: Params, records: list[dict], out: Path = layout.METRICS,
                  metric: str | None = None, majority: dict | None = None) -> dict:
    summary = summarise(params, records, metric, majority)
    acc, aw = curves(params, records, summary["metric"])
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", markdown(summary, params, aw))
    write_json(out / "per_epoch.json", {"records": records})
    plots = out / "plots"
    for method, rows in acc.items():
        write_csv(plots / "target" / f"{method}.csv", TARGET_CSV, rows)
    for t, rows in aw.items():
        write_csv(plots / "alphavil" / f"{t}.csv", ALPHA_CSV, rows)
    save_png(plots / "curves.png", curves_figure(acc, aw, summary["metric"], params.target,
                                                 len(params.seeds)))
    weights_png(records, summary, plots / "weights.png", task_labels(params))
    return summary
