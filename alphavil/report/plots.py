"""The report's figures (matplotlib, imported only when a figure is drawn): curves.png, the
target's dev curve per method beside αVIL's α and weights, and weights.png."""

from __future__ import annotations

import math
from pathlib import Path

from alphavil.store.artifacts import atomic_path
from alphavil.config import Params
from alphavil.report.curves import AlphaRow, TargetRow, WeightRow, record_weight_rows

REFUSED_LABEL = "merge refused (alpha.guard)"


def data_range(values: list[float], margin: float = 0.05) -> tuple[float, float]:
    """An axis range around every value drawn, `margin` of their span on each side: set
    from the data, so late epochs' small differences between methods fill the panel (an
    axis from 0 or chance squeezes them into one line). A flat curve gets ±margin·|v|."""
    lo, hi = min(values), max(values)
    pad = margin * (hi - lo) if hi > lo else margin * max(abs(lo), 1e-3)
    return lo - pad, hi + pad


def _accuracy_panel(ax, acc: dict[str, list[TargetRow]], metric: str, target: str,
                    seeds: int) -> None:
    # θ_0 (epoch 0) is one checkpoint shared by every method, near chance from a random
    # initialisation; drawn, it stretches the axis until the methods overlap. The panel
    # starts at epoch 1 and states θ_0's score in the axis label instead.
    shift = 0.06  # each method's min–max bar a little to the side, so the bars stay apart
    for i, (method, rows) in enumerate(acc.items()):
        rows = [r for r in rows if r.epoch > 0]
        x = [r.epoch + (i - (len(acc) - 1) / 2) * shift for r in rows]
        mean = [r.dev for r in rows]
        ax.errorbar(x, mean, yerr=[[m - r.dev_min for m, r in zip(mean, rows)],
                                   [r.dev_max - m for m, r in zip(mean, rows)]],
                    marker="o", ms=4, capsize=3, color=f"C{i}", label=method)
    ax.set_ylim(*data_range([v for rows in acc.values() for r in rows if r.epoch > 0
                             for v in (r.dev, r.dev_min, r.dev_max)]))
    base = next(iter(acc.values()))[0].dev
    ax.set(xlabel=f"epoch   (epoch 0: θ₀, every method, {base:.3g}; not drawn)",
           ylabel=f"target dev {metric}",
           title=f"target `{target}`: mean over {seeds} seeds, bars min–max")
    ax.legend(fontsize=8)


def _alpha_panel(ax, aw: dict[str, list[AlphaRow]], seeds: int) -> None:
    for i, (t, rows) in enumerate(aw.items()):
        x = [r.epoch for r in rows]
        # NaN breaks the line: an epoch where no seed estimated α stays a gap
        ax.plot(x, [math.nan if r.alpha is None else r.alpha for r in rows], marker="o",
                color=f"C{i}", label=f"α {t}")
        ax.plot(x, [r.weight for r in rows], ls="--", color=f"C{i}", label=f"w {t}")
        for r in rows:
            if r.alpha is not None and r.alpha_seeds < seeds:  # a mean over fewer seeds: say so
                ax.annotate(f"{r.alpha_seeds}/{seeds}", (r.epoch, r.alpha),
                            textcoords="offset points", xytext=(5, 4), fontsize=7, color=f"C{i}")
    refused = [(r.epoch, r.merges_refused) for r in next(iter(aw.values())) if r.merges_refused]
    if refused:
        ax.margins(y=0.15)  # headroom for the counts above the data
    for j, (n, k) in enumerate(refused):
        # a shaded column, not a point: a refusal is per seed, the α drawn is a mean
        ax.axvspan(n - 0.12, n + 0.12, color="red", alpha=0.12, lw=0,
                   label=REFUSED_LABEL if j == 0 else None)
        ax.text(n, 0.985, f"{k}/{seeds} seeds", transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=7, color="red")
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set(xlabel="epoch", ylabel="value",
           title="αVIL: α (solid; gap: not estimated), weight (dashed)")
    ax.legend(fontsize=8)


def curves_figure(acc: dict[str, list[TargetRow]], aw: dict[str, list[AlphaRow]],
                  metric: str, target: str, seeds: int):
    """The target's dev curve per method and, with αVIL, its α and weights per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2 if aw else 1, figsize=(5.5 * (2 if aw else 1), 4.2),
                             squeeze=False)
    _accuracy_panel(axes[0, 0], acc, metric, target, seeds)
    if aw:
        _alpha_panel(axes[0, 1], aw, seeds)
    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    fig.tight_layout()
    return fig


def task_labels(params: Params) -> dict[str, str]:
    """Legend names: the target marked, and a task's ground-truth class where params gives
    one (`tasks.<name>.role`, e.g. helpful, unrelated, harmful)."""
    labels = {}
    for t, spec in params.tasks.items():
        marks = ["target"] if t == params.target else []
        if spec.role is not None:
            marks.append(spec.role)
        labels[t] = f"{t} ({', '.join(marks)})" if marks else t
    return labels


def weights_figure(rows: dict[str, list[WeightRow]], labels: dict[str, str], seeds: int):
    """One line per task: αVIL's mean weight w per epoch, shaded min–max over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for i, (t, rs) in enumerate(rows.items()):  # C{i}: the task's colour in curves.png too
        x = [r.epoch for r in rs]
        ax.plot(x, [r.mean for r in rs], marker="o", ms=4, color=f"C{i}", label=labels[t])
        ax.fill_between(x, [r.low for r in rs], [r.high for r in rs], color=f"C{i}", alpha=0.2,
                        lw=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch (0: initial weights)", ylabel="task weight w",
           title=f"αVIL task weights: mean over {seeds} seeds, band min–max")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def verdict_labels(records: list[dict], summary: dict) -> dict[str, str]:
    """Legend names from a summary: the target marked, each auxiliary task with its verdict
    (summary.json "verdict"), in the order of the records' weights."""
    tasks = next(r["weights"] for r in records if r["method"] == "alphavil")
    verdicts = summary.get("verdict", {}).get("tasks", {})
    return {t: f"{t} (target)" if t == summary["target"]
            else f"{t} ({verdicts[t]['verdict']})" if t in verdicts else t for t in tasks}


def weights_png(records: list[dict], summary: dict, out_path: str | Path,
                labels: dict[str, str] | None = None) -> None:
    """weights.png from evaluation records (per_epoch.json's "records") and their summary
    (summary.json), e.g. a results/<study>/ folder's: one line per task, in `labels`' order
    and under its names (default verdict_labels), mean w over the summary's seeds, band
    min–max. The PNG's bytes depend only on these inputs."""
    labels = verdict_labels(records, summary) if labels is None else labels
    save_png(Path(out_path), weights_figure(record_weight_rows(records, list(labels)), labels,
                                            summary["seeds"]))


def save_png(path: Path, fig) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        # fixed metadata so the PNG is byte-identical between runs
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
