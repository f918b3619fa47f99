"""`make verify`'s comparison of a re-run with the committed metrics (alphavil/verify.py)."""

import math

import pytest

from alphavil.workflow.verify import SIGMA_SEED, Z, VerifyError, compare


def _doc(per_method: dict[str, list[float]], epochs: int = 2) -> dict:
    """per_epoch.json with the given final test accuracies (fractions) per seed; earlier
    epochs get a different value, so a comparison of the wrong epoch shows."""
    records = []
    for method, accs in per_method.items():
        for seed, acc in enumerate(accs):
            for n in range(epochs + 1):
                test = acc if n == epochs else 0.1
                records.append({"method": method, "seed": seed, "epoch": f"ep{n}", "n": n,
                                "dev": {"acc": 0.5, "loss": 1.0},
                                "test": {"acc": test, "loss": 1.0}})
    return {"records": records}


REF = {"alphavil": [0.85, 0.87, 0.86, 0.88], "uniform": [0.84, 0.86, 0.85, 0.83]}


def test_identical_metrics_are_exact():
    assert compare(_doc(REF), _doc(REF), "acc")["verdict"] == "EXACT"


def test_a_shift_within_rounding_noise_is_reproduced_and_beyond_it_is_not():
    tol = Z * SIGMA_SEED / math.sqrt(4)  # pp, for the mean of 4 seeds
    small = {"alphavil": [a + 0.9 * tol / 100 for a in REF["alphavil"]],
             "uniform": REF["uniform"]}
    out = compare(_doc(small), _doc(REF), "acc")
    assert out["verdict"] == "REPRODUCED"
    assert out["methods"]["alphavil"]["mean_diff"] == pytest.approx(0.9 * tol)
    assert out["methods"]["uniform"]["mean_diff"] == pytest.approx(0.0)
    big = {"alphavil": REF["alphavil"], "uniform": [u - 1.1 * tol / 100 for u in REF["uniform"]]}
    out = compare(_doc(big), _doc(REF), "acc")
    assert out["verdict"] == "NOT REPRODUCED"
    assert not out["methods"]["uniform"]["within"] and out["methods"]["alphavil"]["within"]


def test_single_seeds_beyond_the_per_seed_spread_are_listed():
    moved = {"alphavil": [0.85 + 1.2 * Z * SIGMA_SEED / 100, 0.87 - 0.01, 0.86, 0.88],
             "uniform": REF["uniform"]}
    out = compare(_doc(moved), _doc(REF), "acc")
    assert list(out["methods"]["alphavil"]["seeds_beyond"]) == [0]


def test_only_the_final_epoch_counts():
    # same finals, different earlier epochs: not EXACT (the documents differ), but no diff
    a = _doc(REF)
    for r in a["records"]:
        if r["n"] == 1:
            r["test"]["acc"] = 0.9
    out = compare(a, _doc(REF), "acc")
    assert out["verdict"] == "REPRODUCED"
    assert all(m["mean_diff"] == 0.0 for m in out["methods"].values())


def test_other_seeds_or_methods_are_an_error_not_a_verdict():
    fewer = {m: v[:3] for m, v in REF.items()}
    with pytest.raises(VerifyError, match="methods/seeds"):
        compare(_doc(fewer), _doc(REF), "acc")
