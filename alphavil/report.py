"""Turn per-checkpoint evaluations into the metrics, tables and plots a researcher reads.

metrics/summary.json  compact numbers for `dvc exp show` (means over seeds)
metrics/summary.md    the comparison table, per-seed values, paired tests
metrics/per_epoch.json every (method, seed, epoch) evaluation
metrics/plots/        CSVs for `dvc plots show` and PNGs for the README
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from . import layout
from .artifacts import atomic_path, write_json, write_text
from .config import Params


def primary_metric(record: dict, declared: str | None = None) -> str:
    """The metric the tables report: the target's declared one (NLU tasks carry GLUE's
    choice in meta.json), else accuracy, else the first one recorded."""
    keys = [k for k in record["dev"] if k != "loss"]
    if declared is not None:
        if declared not in keys:
            raise ValueError(f"metric {declared!r} was not recorded (have {keys})")
        return declared
    return "acc" if "acc" in keys else keys[0]


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def paired_comparison(a: list[float], b: list[float], seed: int = 0,
                      n_boot: int = 10_000) -> dict:
    """Mean of a − b over paired seeds, a bootstrap 95% CI, and a paired t-test p-value
    (None where fewer than two seeds or zero variance make it undefined)."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    out = {"mean_diff": float(diff.mean()), "n": int(len(diff)), "wins": int((diff > 0).sum()),
           "ci95_low": None, "ci95_high": None, "p_value": None}
    if len(diff) >= 2:
        rng = np.random.default_rng(seed)
        boots = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(1)
        out["ci95_low"], out["ci95_high"] = (float(np.quantile(boots, 0.025)),
                                             float(np.quantile(boots, 0.975)))
        if diff.std() > 0:
            from scipy.stats import ttest_rel

            out["p_value"] = float(ttest_rel(a, b).pvalue)
    return out


def summarise(params: Params, records: list[dict], metric: str | None = None) -> dict:
    metric = primary_metric(records[0], metric)
    last = params.epochs[-1].id
    by_run: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in records:
        by_run[(r["method"], r["seed"])].append(r)

    summary: dict = {"target": params.target, "metric": metric, "epochs": len(params.epochs),
                     "seeds": len(params.seeds), "methods": {}}
    finals: dict[str, list[float]] = {}
    for method in params.methods:
        final_test, final_dev, best_test, best_dev = [], [], [], []
        for seed in params.seeds:
            run = [r for r in by_run[(method, seed)] if r["epoch"] != "base"]
            final = next(r for r in run if r["epoch"] == last)
            # best on dev; ties go to the earliest epoch
            best = max(run, key=lambda r: (r["dev"][metric], -r["n"]))
            final_test.append(final["test"][metric])
            final_dev.append(final["dev"][metric])
            best_test.append(best["test"][metric])
            best_dev.append(best["dev"][metric])
        m, s = _mean_std(final_test)
        bm, bs = _mean_std(best_test)
        entry = {"test": m, "test_std": s, "dev": _mean_std(final_dev)[0],
                 "best_dev": {"test": bm, "test_std": bs, "dev": _mean_std(best_dev)[0]},
                 "per_seed_test": dict(zip(map(str, params.seeds), final_test))}
        if method == "alphavil":
            finals_state = [next(r for r in by_run[(method, s)] if r["epoch"] == last)
                            for s in params.seeds]
            entry["final_weight"] = {t: _mean_std([r["weights"][t] for r in finals_state])[0]
                                     for t in params.tasks}
            entry["final_alpha"] = {t: _mean_std([r["alpha"][t] for r in finals_state])[0]
                                    for t in params.tasks}
            if params.section("alpha").get("guard", False):
                refused = [f"s{r['seed']} {r['epoch']}" for seed in params.seeds
                           for r in by_run[(method, seed)] if r.get("merge_rejected")]
                entry["merges_rejected"] = len(refused)
                entry["merges_rejected_at"] = refused
        summary["methods"][method] = entry
        finals[method] = final_test
    if "alphavil" in finals:
        summary["alphavil_vs"] = {m: paired_comparison(finals["alphavil"], v)
                                  for m, v in finals.items() if m != "alphavil"}
    return summary


def _fmt(x: float | None, pct: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.2f}" if pct else f"{x:.3g}"


def markdown(summary: dict, params: Params, aw: dict | None = None) -> str:
    metric = summary["metric"]
    lines = [f"# Target task `{summary['target']}`: test {metric} (%) after "
             f"{summary['epochs']} epochs, {summary['seeds']} seeds", "",
             "| method | final test (mean ± std) | final dev | best-on-dev test | per seed |",
             "|---|---|---|---|---|"]
    for method, e in summary["methods"].items():
        per_seed = ", ".join(_fmt(v) for v in e["per_seed_test"].values())
        lines.append(f"| {method} | {_fmt(e['test'])} ± {_fmt(e['test_std'])} | {_fmt(e['dev'])} "
                     f"| {_fmt(e['best_dev']['test'])} ± {_fmt(e['best_dev']['test_std'])} "
                     f"| {per_seed} |")
    if summary.get("alphavil_vs"):
        lines += ["", "## αVIL minus each baseline (paired over seeds, final test "
                  f"{metric}, percentage points)", "",
                  "| baseline | mean diff | 95% bootstrap CI | paired t-test p | αVIL wins |",
                  "|---|---|---|---|---|"]
        for m, c in summary["alphavil_vs"].items():
            ci = (f"[{_fmt(c['ci95_low'])}, {_fmt(c['ci95_high'])}]"
                  if c["ci95_low"] is not None else "n/a")
            p = f"{c['p_value']:.3g}" if c["p_value"] is not None else "n/a"
            lines.append(f"| {m} | {_fmt(c['mean_diff'])} | {ci} | {p} | {c['wins']}/{c['n']} |")
    if "alphavil" in summary["methods"]:
        e = summary["methods"]["alphavil"]
        lines += ["", "## αVIL's final task weights and α (mean over seeds)", "",
                  "| task | weight w | last α |", "|---|---|---|"]
        for t in params.tasks:
            lines.append(f"| {t} | {e['final_weight'][t]:.3f} | {e['final_alpha'][t]:.3f} |")
        if "merges_rejected" in e:
            merges = summary["seeds"] * summary["epochs"]
            at = (f" (θ and the weights carried over): {', '.join(e['merges_rejected_at'])}"
                  if e["merges_rejected"] else "")
            lines += ["", f"`alpha.guard` refused {e['merges_rejected']} of {merges} "
                      f"merges{at}."]
    if aw:
        tasks = list(aw)
        lines += ["", "## αVIL per epoch: α / task weight w (mean over seeds)", "",
                  "| epoch | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
        for i, row in enumerate(aw[tasks[0]]):
            cells = [f"{aw[t][i][1]:.3f} / {aw[t][i][2]:.3f}" for t in tasks]
            lines.append(f"| {row[0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    write_text(path, buf.getvalue())


def curves(params: Params, records: list[dict], metric: str) -> tuple[dict, dict]:
    """Mean over seeds, per method and epoch count n: dev/test metric; and αVIL's α, w."""
    acc: dict[str, list[list]] = {}
    for method in params.methods:
        rows = []
        for n in range(len(params.epochs) + 1):
            rs = [r for r in records if r["method"] == method and r["n"] == n]
            rows.append([n, float(np.mean([r["dev"][metric] for r in rs])),
                         float(np.mean([r["test"][metric] for r in rs]))])
        acc[method] = rows
    aw: dict[str, list[list]] = {}
    if "alphavil" in params.methods:
        for t in params.tasks:
            rows = []
            for e in params.epochs:
                rs = [r for r in records if r["method"] == "alphavil" and r["n"] == e.n]
                rows.append([e.n, float(np.mean([r["alpha"][t] for r in rs])),
                             float(np.mean([r["weights"][t] for r in rs]))])
            aw[t] = rows
    return acc, aw


def plot_png(path: Path, acc: dict, aw: dict, metric: str, target: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = 2 if aw else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 4), squeeze=False)
    ax = axes[0, 0]
    for method, rows in acc.items():
        ax.plot([r[0] for r in rows], [r[1] for r in rows], marker="o", label=method)
    ax.set(xlabel="epoch", ylabel=f"target dev {metric}", title=f"target `{target}` (mean over seeds)")
    ax.legend()
    if aw:
        ax = axes[0, 1]
        for i, (t, rows) in enumerate(aw.items()):
            color = f"C{i}"
            ax.plot([r[0] for r in rows], [r[1] for r in rows], marker="o", color=color,
                    label=f"α {t}")
            ax.plot([r[0] for r in rows], [r[2] for r in rows], ls="--", color=color,
                    label=f"w {t}")
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.set(xlabel="epoch", ylabel="value", title="αVIL: α (solid), task weight (dashed)")
        ax.legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    fig.tight_layout()
    with atomic_path(path) as tmp:
        # fixed metadata so the PNG is byte-identical between runs
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def write_reports(params: Params, records: list[dict], out: Path = layout.METRICS,
                  metric: str | None = None) -> dict:
    summary = summarise(params, records, metric)
    acc, aw = curves(params, records, summary["metric"])
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", markdown(summary, params, aw))
    write_json(out / "per_epoch.json", {"records": records})
    plots = out / "plots"
    for method, rows in acc.items():
        _write_csv(plots / "target" / f"{method}.csv", ["epoch", "dev", "test"], rows)
    for t, rows in aw.items():
        _write_csv(plots / "alphavil" / f"{t}.csv", ["epoch", "alpha", "weight"], rows)
    plot_png(plots / "curves.png", acc, aw, summary["metric"], params.target)
    return summary
