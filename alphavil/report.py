"""Turn per-checkpoint evaluations into the metrics, tables and plots a researcher reads.

metrics/summary.json  compact numbers for `dvc exp show` (means over seeds)
metrics/summary.md    the comparison table, per-seed values, paired tests
metrics/per_epoch.json every (method, seed, epoch) evaluation
metrics/plots/        CSVs for `dvc plots show`, curves.png (the README's) and weights.png
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


def mean_estimated(values: list[float | None]) -> tuple[float | None, int]:
    """Mean over the seeds where α was estimated, and how many they are. α is None where the
    task took no step (weight 0): averaging in a stand-in value would invent a number."""
    known = [v for v in values if v is not None]
    return (float(np.mean(known)) if known else None), len(known)


# Differences closer than this count as equal: accuracies are multiples of 1/N, and two
# seeds with the same difference can differ in the last bits after the subtraction.
_SAME = 1e-12


def paired_comparison(a: list[float], b: list[float]) -> dict:
    """Mean of a − b over paired seeds with one model for both the interval and the test:
    the paired t-test's two-sided p-value and its 95% t interval,
    mean ± t_{0.975, n−1}·sd/√n, so the interval excludes 0 exactly when p < 0.05.
    Both are None where t is undefined: fewer than two seeds, or the same difference on
    every seed (zero variance)."""
    from scipy.stats import t as student_t

    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n, mean = len(diff), float(diff.mean())
    out = {"mean_diff": mean, "n": n, "wins": int((diff > 0).sum()),
           "ci95_low": None, "ci95_high": None, "p_value": None}
    if n >= 2 and np.ptp(diff) > _SAME:
        se = float(diff.std(ddof=1)) / math.sqrt(n)
        half = float(student_t.ppf(0.975, n - 1)) * se
        out["ci95_low"], out["ci95_high"] = mean - half, mean + half
        out["p_value"] = float(2 * student_t.sf(abs(mean) / se, n - 1))
    return out


def holm(pvalues: dict[str, float | None]) -> dict[str, float | None]:
    """Holm's step-down correction over the k comparisons that have a p-value: the i-th
    smallest is multiplied by k − i + 1, kept at least as large as the one before and capped
    at 1. It bounds the chance of any false "αVIL beats X" among the k baselines by 5%
    at p_holm < 0.05, without assuming the comparisons independent (they share αVIL's runs).
    A comparison without a p-value stays None and does not count in k."""
    tested = sorted((p, name) for name, p in pvalues.items() if p is not None)
    out: dict[str, float | None] = dict.fromkeys(pvalues)
    running = 0.0
    for i, (p, name) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - i) * p))
        out[name] = running
    return out


def ranking_score(values: dict[str, float | None], roles: dict[str, str]) -> float | None:
    """The fraction of (helpful, harmful) task pairs whose helpful task has the larger value
    (a weight or an α), ties counting half, as in the Mann-Whitney AUC: 1 ranks every
    harmful task below every helpful one, 0.5 is chance, or αVIL switching both off.
    Pairs with a value of None (α not estimated: the task took no step) are left out;
    None where no pair is left."""
    helpful = [t for t, r in roles.items() if r == "helpful" and values.get(t) is not None]
    harmful = [t for t, r in roles.items() if r == "harmful" and values.get(t) is not None]
    pairs = [(values[h], values[b]) for h in helpful for b in harmful]
    if not pairs:
        return None
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)


def aux_roles(params: Params) -> dict[str, str]:
    """Roles of the auxiliary tasks, or {} unless a suite has both a helpful and a harmful
    one (the ranking score is then undefined)."""
    roles = {t: s.role for t, s in params.tasks.items() if t != params.target and s.role}
    return roles if {"helpful", "harmful"} <= set(roles.values()) else {}


def _by_epoch(params: Params, by_run: dict, roles: dict[str, str]) -> dict:
    """αVIL after each epoch: per task the mean weight and mean α over seeds (α: over the
    seeds that estimated it), and with a suite's roles the ranking score per seed, so
    `dvc exp show` can follow how the weights move (per seed values: per_epoch.json)."""
    out = {}
    for ep in params.epochs:
        rows = [next(r for r in by_run[("alphavil", s)] if r["epoch"] == ep.id)
                for s in params.seeds]
        e = {"weight": {t: _mean_std([r["weights"][t] for r in rows])[0] for t in params.tasks},
             "alpha": {t: mean_estimated([r["alpha"][t] for r in rows])[0]
                       for t in params.tasks}}
        if roles:
            e["ranking_weights_per_seed"] = {str(r["seed"]): ranking_score(r["weights"], roles)
                                             for r in rows}
        out[ep.id] = e
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
        # train.on_divergence: mark. Only present when a seed diverged, so a run without
        # divergence writes the same summary as before the option existed.
        diverged = {str(seed): r["diverged"] for seed in params.seeds
                    for r in by_run[(method, seed)] if r["epoch"] == last and "diverged" in r}
        if diverged:
            entry["diverged"] = diverged
        if method == "alphavil":
            finals_state = [next(r for r in by_run[(method, s)] if r["epoch"] == last)
                            for s in params.seeds]
            entry["final_weight"] = {t: _mean_std([r["weights"][t] for r in finals_state])[0]
                                     for t in params.tasks}
            alpha = {t: mean_estimated([r["alpha"][t] for r in finals_state])
                     for t in params.tasks}
            # null where no seed estimated it; final_alpha_seeds: how many seeds did
            entry["final_alpha"] = {t: a for t, (a, _) in alpha.items()}
            entry["final_alpha_seeds"] = {t: k for t, (_, k) in alpha.items()}
            roles = aux_roles(params)
            if roles:  # ground truth of the suite (tasks.<name>.role)
                for by in ("weights", "alpha"):
                    per_seed = [ranking_score(r[by], roles) for r in finals_state]
                    entry[f"ranking_{by}"] = mean_estimated(per_seed)[0]
                    entry[f"ranking_{by}_per_seed"] = dict(zip(map(str, params.seeds), per_seed))
            entry["by_epoch"] = _by_epoch(params, by_run, roles)
            if params.alpha.guard:
                refused = [f"s{r['seed']} {r['epoch']}" for seed in params.seeds
                           for r in by_run[(method, seed)] if r.get("merge_rejected")]
                entry["merges_rejected"] = len(refused)
                entry["merges_rejected_at"] = refused
        summary["methods"][method] = entry
        finals[method] = final_test
    if "alphavil" in finals:
        vs = {m: paired_comparison(finals["alphavil"], v)
              for m, v in finals.items() if m != "alphavil"}
        for m, p in holm({m: c["p_value"] for m, c in vs.items()}).items():
            vs[m]["p_holm"] = p
        summary["alphavil_vs"] = vs
    return summary


def _fmt(x: float | None, pct: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.2f}" if pct else f"{x:.3g}"


def _p(p: float | None) -> str:
    return f"{p:.3g}" if p is not None else "n/a"


def alpha_cell(mean: float | None, k: int, n: int) -> str:
    """α over seeds: "–" where no seed estimated it, and "(k/n)" where only k of n did."""
    if mean is None:
        return "–"
    return f"{mean:.3f}" + (f" ({k}/{n})" if k < n else "")


def comparison_lines(vs: dict, heading: str) -> list[str]:
    """The table of αVIL minus each baseline (paired_comparison entries with p_holm)."""
    k = sum(c["p_value"] is not None for c in vs.values())
    lines = ["", heading, "",
             "| baseline | mean diff | 95% t CI | p (paired t) | "
             f"p (Holm, {k} baseline{'s' * (k != 1)}) | αVIL wins |",
             "|---|---|---|---|---|---|"]
    for m, c in vs.items():
        ci = (f"[{_fmt(c['ci95_low'])}, {_fmt(c['ci95_high'])}]"
              if c["ci95_low"] is not None else "n/a")
        lines.append(f"| {m} | {_fmt(c['mean_diff'])} | {ci} | {_p(c['p_value'])} "
                     f"| {_p(c['p_holm'])} | {c['wins']}/{c['n']} |")
    return lines


def markdown(summary: dict, params: Params, aw: dict | None = None) -> str:
    metric = summary["metric"]
    seeds = summary["seeds"]
    lines = [f"# Target task `{summary['target']}`: test {metric} (%) after "
             f"{summary['epochs']} epochs, {seeds} seeds", "",
             "| method | final test (mean ± std) | final dev | best-on-dev test | per seed |",
             "|---|---|---|---|---|"]
    for method, e in summary["methods"].items():
        per_seed = ", ".join(_fmt(v) for v in e["per_seed_test"].values())
        lines.append(f"| {method} | {_fmt(e['test'])} ± {_fmt(e['test_std'])} | {_fmt(e['dev'])} "
                     f"| {_fmt(e['best_dev']['test'])} ± {_fmt(e['best_dev']['test_std'])} "
                     f"| {per_seed} |")
    for method, e in summary["methods"].items():
        if "diverged" in e:
            at = ", ".join(f"seed {s} in {ep}" for s, ep in e["diverged"].items())
            lines += ["", f"**{method} diverged** (loss NaN/inf; {at}): from there on its "
                      "checkpoints keep the last finite parameters (train.on_divergence: mark)."]
    if summary.get("alphavil_vs"):
        lines += comparison_lines(summary["alphavil_vs"], "## αVIL minus each baseline "
                                  f"(paired over seeds, final test {metric}, percentage points)")
        lines += ["", "Two-sided paired t-test on the per-seed differences; the CI is the same "
                  "test's interval, mean ± t(0.975, n−1)·sd/√n, so it excludes 0 exactly when "
                  "p < 0.05. Holm corrects p for comparing αVIL with the k baselines that have "
                  "one. n/a: fewer than 2 seeds, or the same difference on every seed."]
    if "alphavil" in summary["methods"]:
        e = summary["methods"]["alphavil"]
        lines += ["", "## αVIL's final task weights and α (mean over seeds)", "",
                  "| task | weight w | last α |", "|---|---|---|"]
        for t in params.tasks:
            a = alpha_cell(e["final_alpha"][t], e["final_alpha_seeds"][t], seeds)
            lines.append(f"| {t} | {e['final_weight'][t]:.3f} | {a} |")
        if "ranking_weights" in e:
            lines += ["", "Ranking against the suite's roles (fraction of (helpful, harmful) "
                      "pairs with the helpful task higher, ties ½; mean over seeds): final "
                      f"weight {alpha_cell(e['ranking_weights'], 0, 0)}, final α "
                      f"{alpha_cell(e['ranking_alpha'], 0, 0)}."]
        if "merges_rejected" in e:
            merges = seeds * summary["epochs"]
            at = (f" (θ and the weights carried over): {', '.join(e['merges_rejected_at'])}"
                  if e["merges_rejected"] else "")
            lines += ["", f"`alpha.guard` refused {e['merges_rejected']} of {merges} "
                      f"merges{at}."]
    if aw:
        tasks = list(aw)
        guard = "merges_rejected" in summary["methods"].get("alphavil", {})
        extra = [" merges refused (alpha.guard) |"] if guard else [""]
        lines += ["", "## αVIL per epoch: α / task weight w (mean over seeds)", "",
                  "| epoch | " + " | ".join(tasks) + " |" + extra[0],
                  "|---" * (len(tasks) + 1 + guard) + "|"]
        for i, row in enumerate(aw[tasks[0]]):
            cells = [f"{alpha_cell(aw[t][i][1], aw[t][i][3], seeds)} / {aw[t][i][2]:.3f}"
                     for t in tasks]
            refused = f" {row[4]}/{seeds} |" if guard else ""
            lines.append(f"| {row[0]} | " + " | ".join(cells) + " |" + refused)
        lines += ["", "α is averaged over the seeds where it was estimated: (k/n) where only k "
                  "of n seeds estimated it, – where none did. A task at weight 0 takes no "
                  "fine-tune step, so its α is not estimated (null in per_epoch.json)."]
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    # None (α not estimated) -> NaN: `dvc plots show` leaves a gap there; an empty cell
    # would reach its Vega-Lite template as "" and be drawn as 0
    w.writerows([["NaN" if v is None else v for v in row] for row in rows])
    write_text(path, buf.getvalue())


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


REFUSED_LABEL = "merge refused (alpha.guard)"


def data_range(values: list[float], margin: float = 0.05) -> tuple[float, float]:
    """An axis range around every value drawn, `margin` of their span on each side: set
    from the data, so late epochs' small differences between methods fill the panel (an
    axis from 0 or chance squeezes them into one line). A flat curve gets ±margin·|v|."""
    lo, hi = min(values), max(values)
    pad = margin * (hi - lo) if hi > lo else margin * max(abs(lo), 1e-3)
    return lo - pad, hi + pad


def _accuracy_panel(ax, acc: dict, metric: str, target: str, seeds: int) -> None:
    # θ_0 (epoch 0) is one checkpoint shared by every method, near chance from a random
    # initialisation; drawn, it stretches the axis until the methods overlap. The panel
    # starts at epoch 1 and states θ_0's score in the axis label instead.
    shift = 0.06  # each method's min–max bar a little to the side, so the bars stay apart
    for i, (method, rows) in enumerate(acc.items()):
        rows = [r for r in rows if r[0] > 0]
        x = [r[0] + (i - (len(acc) - 1) / 2) * shift for r in rows]
        mean = [r[1] for r in rows]
        ax.errorbar(x, mean, yerr=[[m - r[3] for m, r in zip(mean, rows)],
                                   [r[4] - m for m, r in zip(mean, rows)]],
                    marker="o", ms=4, capsize=3, color=f"C{i}", label=method)
    ax.set_ylim(*data_range([v for rows in acc.values() for r in rows if r[0] > 0
                             for v in (r[1], r[3], r[4])]))
    base = next(iter(acc.values()))[0][1]
    ax.set(xlabel=f"epoch   (epoch 0: θ₀, every method, {base:.3g}; not drawn)",
           ylabel=f"target dev {metric}",
           title=f"target `{target}`: mean over {seeds} seeds, bars min–max")
    ax.legend(fontsize=8)


def _alpha_panel(ax, aw: dict, seeds: int) -> None:
    for i, (t, rows) in enumerate(aw.items()):
        x = [r[0] for r in rows]
        # NaN breaks the line: an epoch where no seed estimated α stays a gap
        ax.plot(x, [math.nan if r[1] is None else r[1] for r in rows], marker="o",
                color=f"C{i}", label=f"α {t}")
        ax.plot(x, [r[2] for r in rows], ls="--", color=f"C{i}", label=f"w {t}")
        for r in rows:
            if r[1] is not None and r[3] < seeds:  # a mean over fewer seeds: say how many
                ax.annotate(f"{r[3]}/{seeds}", (r[0], r[1]), textcoords="offset points",
                            xytext=(5, 4), fontsize=7, color=f"C{i}")
    refused = [(r[0], r[4]) for r in next(iter(aw.values())) if r[4]]
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


def curves_figure(acc: dict, aw: dict, metric: str, target: str, seeds: int):
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


def weights_figure(rows: dict, labels: dict[str, str], seeds: int):
    """One line per task: αVIL's mean weight w per epoch, shaded min–max over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for i, (t, rs) in enumerate(rows.items()):  # C{i}: the task's colour in curves.png too
        x = [r[0] for r in rs]
        ax.plot(x, [r[1] for r in rs], marker="o", ms=4, color=f"C{i}", label=labels[t])
        ax.fill_between(x, [r[2] for r in rs], [r[3] for r in rs], color=f"C{i}", alpha=0.2,
                        lw=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch (0: initial weights)", ylabel="task weight w",
           title=f"αVIL task weights: mean over {seeds} seeds, band min–max")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save_png(path: Path, fig) -> None:
    import matplotlib.pyplot as plt

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
        _write_csv(plots / "target" / f"{method}.csv", TARGET_CSV, rows)
    for t, rows in aw.items():
        _write_csv(plots / "alphavil" / f"{t}.csv", ALPHA_CSV, rows)
    save_png(plots / "curves.png", curves_figure(acc, aw, summary["metric"], params.target,
                                                 len(params.seeds)))
    save_png(plots / "weights.png", weights_figure(weight_rows(params, records),
                                                   task_labels(params), len(params.seeds)))
    return summary
