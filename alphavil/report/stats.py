"""The statistics behind the report: means over seeds, αVIL paired with a baseline, Holm's
correction and the ranking score against a suite's roles. numpy (and scipy for t) only."""

from __future__ import annotations

import math

import numpy as np

# Differences closer than this count as equal: accuracies are multiples of 1/N, and two
# seeds with the same difference can differ in the last bits after the subtraction.
SAME = 1e-12


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0.0 for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def mean_estimated(values: list[float | None]) -> tuple[float | None, int]:
    """Mean over the seeds where α was estimated, and how many they are. α is None where the
    task took no step (weight 0): averaging in a stand-in value would invent a number."""
    known = [v for v in values if v is not None]
    return (float(np.mean(known)) if known else None), len(known)


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
    if n >= 2 and np.ptp(diff) > SAME:
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
