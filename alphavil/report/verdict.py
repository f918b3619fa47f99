"""Which auxiliary tasks helped the target: a verdict per task over seeds, from αVIL's α.

Each epoch αVIL fits α_k on the target's dev loss of θ + Σ α_k δ_k. Whether α_k then says
that δ_k lowered or raised that loss depends on where the fit starts and how far it goes,
so the neutral value α is compared with, and what the comparison means, come from the
α settings (neutral_alpha); the rule text in summary.json states them."""

from __future__ import annotations

from alphavil.config import Params
from alphavil.report.stats import holm, paired_comparison

LEVEL = 0.05  # family-wise error rate over the auxiliary tasks (Holm)


def neutral_alpha(params: Params) -> tuple[float, str]:
    """The α an auxiliary task would get if its delta did not matter to the target, and
    what α above or below it says under these α settings."""
    a = params.alpha
    if a.order == "target_first":
        return 0.0, ("auxiliary α are fitted from 0 on top of the target's own delta "
                     "(alpha.order target_first), so α_k > 0 says adding δ_k lowered the "
                     "target's dev loss and α_k < 0 that it raised it")
    if a.fit == "converge":
        return 0.0, ("α is the minimiser of the target's dev loss (alpha.fit converge), so "
                     "α_k > 0 says adding δ_k lowered that loss and α_k < 0 that it raised it")
    return a.init, (f"under alpha.fit budget α moves only about alpha.steps·alpha.lr from "
                    f"alpha.init = {a.init:g}, so α_k above or below it says the target's dev "
                    "loss wanted more or less of δ_k than the plain sum, not that δ_k lowered "
                    "or raised it: a helpful task whose step overshoots reads as hurt")


def cumulative_alpha(params: Params, records: list[dict]) -> dict[int, dict[str, list[float]]]:
    """Per seed, per task: Σ over epochs 1..n of (α − neutral) after each epoch n. An epoch
    where the task took no step (weight 0, α not estimated) adds 0: no evidence either way."""
    neutral, _ = neutral_alpha(params)
    out: dict[int, dict[str, list[float]]] = {}
    for seed in params.seeds:
        rows = {r["epoch"]: r for r in records if r["method"] == "alphavil" and r["seed"] == seed}
        per_task: dict[str, list[float]] = {}
        for t in params.tasks:
            total, path = 0.0, []
            for ep in params.epochs:
                a = rows[ep.id]["alpha"][t]
                total += 0.0 if a is None else a - neutral
                path.append(total)
            per_task[t] = path
        out[seed] = per_task
    return out


def verdict(params: Params, records: list[dict]) -> dict:
    """summary.json's "verdict": per auxiliary task helped / hurt / no evidence, from a
    one-sample t-test over seeds of its mean α − neutral, Holm-corrected across the tasks."""
    neutral, meaning = neutral_alpha(params)
    epochs = len(params.epochs)
    cum = cumulative_alpha(params, records)
    aux = [t for t in params.tasks if t != params.target]
    n = len(params.seeds)
    # the mean over epochs is the cumulative α divided by their number: one ordering for both
    tests = {t: paired_comparison([cum[s][t][-1] / epochs for s in params.seeds], [0.0] * n)
             for t in aux}
    corrected = holm({t: c["p_value"] for t, c in tests.items()})
    tasks = {}
    for t, c in tests.items():
        p = corrected[t]
        call = ("no evidence" if p is None or p >= LEVEL
                else "helped" if c["mean_diff"] > 0 else "hurt")
        ci = [c["ci95_low"], c["ci95_high"]] if c["ci95_low"] is not None else None
        tasks[t] = {"verdict": call, "mean": c["mean_diff"], "ci": ci, "p_holm": p}
    return {
        "rule": (f"helped where the one-sample t-test over seeds of the signal has a Holm-"
                 f"corrected p < {LEVEL:g} across the {len(aux)} auxiliary task"
                 f"{'s' * (len(aux) != 1)} and its mean is "
                 "above 0, hurt where that holds with the mean below 0, otherwise no evidence "
                 "(always with a single seed); ci is the uncorrected 95% t interval of the "
                 f"mean; {meaning}."),
        "signal": (f"per seed, the task's mean over the {epochs} epochs of α_k − {neutral:g} "
                   "(cumulative α over epochs, divided by their number), an epoch where the "
                   "task took no step (α not estimated) counting as 0"),
        "seeds": n, "tasks": tasks}
