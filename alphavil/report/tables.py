"""metrics/summary.md: the comparison table, per-seed values, paired tests and αVIL's
weights and α, as markdown."""

from __future__ import annotations

import math

from alphavil.config import Params
from alphavil.report.curves import AlphaRow


# summary.json's ranking_<key> (report.rank_by) -> how summary.md names its quantity
RANKED_BY = {"weights": "final weight", "cumulative_alpha": "cumulative α"}


def fmt(x: float | None, pct: bool = True) -> str:
    """A metric as a percentage with 2 decimals (pct=False: 3 significant digits); n/a for
    None or NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.2f}" if pct else f"{x:.3g}"


def fmt_p(p: float | None) -> str:
    """A p-value to 3 significant digits; n/a where t was undefined."""
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
        ci = (f"[{fmt(c['ci95_low'])}, {fmt(c['ci95_high'])}]"
              if c["ci95_low"] is not None else "n/a")
        lines.append(f"| {m} | {fmt(c['mean_diff'])} | {ci} | {fmt_p(c['p_value'])} "
                     f"| {fmt_p(c['p_holm'])} | {c['wins']}/{c['n']} |")
    return lines


def verdict_lines(v: dict) -> list[str]:
    """The verdict per auxiliary task (summary.json "verdict"), ranked by its mean signal
    (the cumulative α), then the rule."""
    lines = ["", f"## Verdict per auxiliary task ({v['seeds']} seed{'s' * (v['seeds'] != 1)})",
             "", "| task | verdict | mean α − neutral | 95% t CI | p (Holm) |",
             "|---|---|---|---|---|"]
    for t, c in sorted(v["tasks"].items(), key=lambda tc: -tc[1]["mean"]):
        ci = f"[{c['ci'][0]:.3g}, {c['ci'][1]:.3g}]" if c["ci"] else "n/a"
        lines.append(f"| {t} | {c['verdict']} | {c['mean']:.3g} | {ci} | {fmt_p(c['p_holm'])} |")
    return lines + ["", f"Signal: {v['signal']}. Rule: {v['rule']}"]


def markdown(summary: dict, params: Params,
             aw: dict[str, list[AlphaRow]] | None = None) -> str:
    """summary.md from summarise's dict and, with αVIL, curves' rows per task."""
    metric = summary["metric"]
    seeds = summary["seeds"]
    lines = [f"# Target task `{summary['target']}`: test {metric} (%) after "
             f"{summary['epochs']} epochs, {seeds} seeds", "",
             "| method | final test (mean ± std) | final dev | best-on-dev test | per seed |",
             "|---|---|---|---|---|"]
    for method, e in summary["methods"].items():
        per_seed = ", ".join(fmt(v) for v in e["per_seed_test"].values())
        lines.append(f"| {method} | {fmt(e['test'])} ± {fmt(e['test_std'])} | {fmt(e['dev'])} "
                     f"| {fmt(e['best_dev']['test'])} ± {fmt(e['best_dev']['test_std'])} "
                     f"| {per_seed} |")
    if summary.get("majority"):
        lines += ["", f"Majority class (always answering the target's most frequent class): "
                  f"dev {fmt(summary['majority']['dev'])}, test {fmt(summary['majority']['test'])}."]
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
        by = next((b for b in RANKED_BY if f"ranking_{b}" in e), None)
        if by:
            lines += ["", "Ranking against the suite's roles (fraction of (helpful, harmful) "
                      f"pairs with the helpful task higher, ties ½; mean over seeds): {RANKED_BY[by]} "
                      f"{alpha_cell(e[f'ranking_{by}'], 0, 0)}, final α "
                      f"{alpha_cell(e['ranking_alpha'], 0, 0)}."]
        if "merges_rejected" in e:
            merges = seeds * summary["epochs"]
            at = (f" (θ and the weights carried over): {', '.join(e['merges_rejected_at'])}"
                  if e["merges_rejected"] else "")
            lines += ["", f"`alpha.guard` refused {e['merges_rejected']} of {merges} "
                      f"merges{at}."]
    if summary.get("verdict"):
        lines += verdict_lines(summary["verdict"])
    if aw:
        tasks = list(aw)
        guard = "merges_rejected" in summary["methods"].get("alphavil", {})
        extra = [" merges refused (alpha.guard) |"] if guard else [""]
        lines += ["", "## αVIL per epoch: α / task weight w (mean over seeds)", "",
                  "| epoch | " + " | ".join(tasks) + " |" + extra[0],
                  "|---" * (len(tasks) + 1 + guard) + "|"]
        for rows in zip(*aw.values()):  # one epoch: each task's row
            cells = [f"{alpha_cell(r.alpha, r.alpha_seeds, seeds)} / {r.weight:.3f}"
                     for r in rows]
            refused = f" {rows[0].merges_refused}/{seeds} |" if guard else ""
            lines.append(f"| {rows[0].epoch} | " + " | ".join(cells) + " |" + refused)
        lines += ["", "α is averaged over the seeds where it was estimated: (k/n) where only k "
                  "of n seeds estimated it, – where none did. A task at weight 0 takes no "
                  "fine-tune step, so its α is not estimated (null in per_epoch.json)."]
    return "\n".join(lines) + "\n"
