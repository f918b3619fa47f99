"""The tables `python -m alphavil.workflow.lrgrid` prints and writes: the dev metric per
learning rate with the selected one marked, and each method tested at its own lr."""

from __future__ import annotations

from alphavil.report import comparison_lines, fmt


def lr_text(lr: float) -> str:
    """A learning rate as written in -S overrides, names and JSON keys: positional, so that
    YAML reads it back as a float (PyYAML reads `1e-05` as a string)."""
    return f"{lr:.12f}".rstrip("0").rstrip(".")


def selection_table(sel: dict) -> str:
    grid = [lr_text(lr) for lr in sel["grid"]]
    lines = [f"dev {sel['metric']} (%) per train.lr, mean over seeds {sel['seeds']}; "
             "* selected", "", "| method | " + " | ".join(grid) + " |",
             "|---" * (len(grid) + 1) + "|"]
    for m, e in sel["methods"].items():
        cells = [fmt(e["dev_by_lr"][g]) + (" *" if g == lr_text(e["lr"]) else "")
                 + (" (diverged)" if g in e.get("diverged_at", ()) else "") for g in grid]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    edge = [m for m, e in sel["methods"].items() if e.get("at_edge")]
    if edge:
        lines += ["", f"at the grid's edge (the best lr may lie beyond it): {', '.join(edge)}"]
    if any(e.get("diverged_at") for e in sel["methods"].values()):
        lines += ["", "(diverged): the loss became NaN/inf on at least one seed, so that lr "
                  "was not a candidate; the dev value is of the last finite parameters"]
    return "\n".join(lines) + "\n"


def tested_markdown(t: dict) -> str:
    metric, n = t["metric"], len(t["seeds"])
    lines = [f"# Each method at its dev-selected train.lr: test {metric} (%), {n} fresh seeds",
             "", f"Learning rates chosen on dev over seeds {t['selection_seeds']} from the grid "
             f"{', '.join(map(lr_text, t['grid']))}; tested on seeds {t['seeds']}.", "",
             "| method | train.lr | final test (mean ± std) | per seed |", "|---|---|---|---|"]
    for m, e in t["methods"].items():
        per_seed = ", ".join(fmt(v) for v in e["per_seed_test"].values())
        lines.append(f"| {m} | {lr_text(e['lr'])} | {fmt(e['test'])} ± {fmt(e['test_std'])} "
                     f"| {per_seed} |")
    for m, e in t["methods"].items():
        if e.get("diverged"):
            at = ", ".join(f"seed {s} in {ep}" for s, ep in e["diverged"].items())
            lines += ["", f"**{m} diverged** at its lr ({at}): its later epochs keep the last "
                      "finite parameters."]
    if t.get("alphavil_vs"):
        lines += comparison_lines(t["alphavil_vs"], "## αVIL minus each baseline, each at "
                                  "its own lr (paired over seeds, percentage points)")
        lines += ["", "Two-sided paired t-test on the per-seed differences and its 95% "
                  "interval (as in metrics/summary.md); Holm over the baselines."]
    return "\n".join(lines) + "\n"
