"""The verdict per auxiliary task against known answers and scipy, report.rank_by, and
weights_png from a results folder's records and summary."""

import numpy as np
import pytest
from scipy.stats import ttest_1samp

from alphavil.config import validate
from alphavil.report import holm, markdown, summarise, weights_png, write_reports
from testkit.params import tiny_raw

SEEDS = [0, 1, 2, 3, 4, 5]
TASKS = {"left": {"label": "left"},
         "good": {"label": "right", "role": "helpful"},
         "bad": {"label": "right", "role": "harmful"},
         "noise": {"label": "right", "role": "unrelated"}}
# per seed, a small spread so that t is defined; noise swings either way around 1
WOBBLE = [0.02, -0.01, 0.03, -0.02, 0.0, 0.01]


def _params(seeds=SEEDS, **sections):
    return validate(tiny_raw(seeds=list(seeds), baselines=["single_task"], tasks=TASKS,
                             **sections))


def _alpha(t: str, seed: int, n: int) -> float | None:
    w = WOBBLE[seed]
    return {"left": 1.0 + w, "good": 1.3 + w * n, "bad": 0.7 - w,
            "noise": 1.0 + (0.2 if seed % 2 else -0.2) + w}[t]


def _records(seeds=SEEDS, alpha=_alpha, weights=None):
    """Two epochs (tiny_raw); αVIL's weights follow the additive rule unless given."""
    records = []
    for m in ("alphavil", "single_task"):
        for s in seeds:
            w = dict.fromkeys(TASKS, 1.0)
            for ep, n in (("base", 0), ("ep0", 1), ("ep1", 2)):
                r = {"method": m, "seed": s, "epoch": ep, "n": n, "dev": {"acc": 0.5},
                     "test": {"acc": 0.5 + 0.01 * s}, "weights": None, "alpha": None}
                if m == "alphavil":
                    a = {t: alpha(t, s, n) for t in TASKS} if n else None
                    if a:
                        w = {t: w[t] + (a[t] - 1.0 if a[t] is not None else 0.0) for t in TASKS}
                    r["alpha"] = a
                    r["weights"] = weights(s, n) if weights else dict(w)
                records.append(r)
    return records


def test_a_helping_a_hurting_and_a_noisy_task_get_their_verdicts():
    v = summarise(_params(), _records())["verdict"]
    assert set(v) == {"rule", "signal", "seeds", "tasks"} and v["seeds"] == len(SEEDS)
    assert list(v["tasks"]) == ["good", "bad", "noise"]  # the target gets none
    assert {t: c["verdict"] for t, c in v["tasks"].items()} == \
        {"good": "helped", "bad": "hurt", "noise": "no evidence"}
    # by hand: per seed the mean over the two epochs of α − 1 (alpha.init, budget fit)
    signals = {t: [np.mean([_alpha(t, s, n) - 1.0 for n in (1, 2)]) for s in SEEDS]
               for t in ("good", "bad", "noise")}
    p_holm = holm({t: float(ttest_1samp(x, 0.0).pvalue) for t, x in signals.items()})
    for t, x in signals.items():
        c, ref = v["tasks"][t], ttest_1samp(x, 0.0)
        ci = ref.confidence_interval(0.95)
        assert c["mean"] == pytest.approx(float(np.mean(x)), abs=1e-12)
        assert c["ci"] == pytest.approx([float(ci.low), float(ci.high)], rel=1e-9)
        assert c["p_holm"] == pytest.approx(p_holm[t], rel=1e-9)
    assert v["tasks"]["noise"]["ci"][0] < 0 < v["tasks"]["noise"]["ci"][1]


def test_one_seed_gives_no_evidence_and_no_interval():
    v = summarise(_params(seeds=[3]), _records(seeds=[3]))["verdict"]
    assert v["seeds"] == 1
    for c in v["tasks"].values():
        assert c["verdict"] == "no evidence" and c["ci"] is None and c["p_holm"] is None


def test_holm_can_withhold_a_verdict_a_single_test_would_give():
    # three tasks, each with raw p just under 0.05: Holm's smallest factor is 3
    def alpha(t, s, n):
        return 1.0 + 0.01 + 0.02 * WOBBLE[s] / 0.03 if t != "left" else 1.0
    v = summarise(_params(), _records(alpha=alpha))["verdict"]
    raw_p = ttest_1samp([np.mean([alpha("good", s, n) - 1 for n in (1, 2)]) for s in SEEDS],
                        0.0).pvalue
    assert raw_p < 0.05 < 3 * raw_p
    assert all(c["verdict"] == "no evidence" and c["ci"][0] > 0 for c in v["tasks"].values())


@pytest.mark.parametrize("alpha_section, neutral, budget_caveat", [
    ({}, 1.0, True),                           # the default: budget fit from alpha.init
    ({"init": 0.5}, 0.5, True),
    ({"fit": "converge"}, 0.0, False),         # α is the dev-loss minimiser
    ({"order": "target_first"}, 0.0, False),   # auxiliary α fitted from 0
])
def test_the_neutral_value_follows_the_alpha_settings_and_the_rule_says_what_it_means(
        alpha_section, neutral, budget_caveat):
    # α = 0.8 ± a little on every task: below 1, above 0.5 and 0
    v = summarise(_params(alpha=alpha_section),
                  _records(alpha=lambda t, s, n: 0.8 + WOBBLE[s]))["verdict"]
    want = "hurt" if neutral > 0.8 else "helped"
    assert {c["verdict"] for c in v["tasks"].values()} == {want}
    assert v["tasks"]["good"]["mean"] == pytest.approx(0.8 + np.mean(WOBBLE) - neutral)
    assert ("not that δ_k lowered or raised it" in v["rule"]) == budget_caveat
    assert f"α_k − {neutral:g}" in v["signal"]


def test_an_epoch_without_alpha_counts_as_neutral():
    # `bad` at weight 0 after epoch 1: its α in epoch 2 is not estimated
    def alpha(t, s, n):
        return None if (t == "bad" and n == 2) else _alpha(t, s, n)
    v = summarise(_params(), _records(alpha=alpha))["verdict"]
    assert v["tasks"]["bad"]["mean"] == pytest.approx(
        np.mean([(_alpha("bad", s, 1) - 1.0 + 0.0) / 2 for s in SEEDS]))


def test_summary_md_ranks_the_verdicts_by_mean_and_states_the_rule():
    params = _params()
    summary = summarise(params, _records())
    md = markdown(summary, params)
    table = md[md.index("## Verdict per auxiliary task"):]
    rows = [ln.split("|")[1:3] for ln in table.splitlines() if ln.startswith("| ") and
            not ln.startswith("| task")]
    assert [(t.strip(), v.strip()) for t, v in rows] == \
        [("good", "helped"), ("noise", "no evidence"), ("bad", "hurt")]
    assert summary["verdict"]["rule"] in table


# --- report.rank_by -----------------------------------------------------------------------

def _disagreeing():
    """Weights rank `good` above `bad`; cumulative α ranks them the other way."""
    def alpha(t, s, n):
        return {"good": 0.9, "bad": 1.2}.get(t, 1.0)

    def weights(s, n):
        return {"left": 1.0, "good": 1.0 + n, "bad": 1.0 - 0.1 * n, "noise": 1.0}
    return _records(alpha=alpha, weights=weights)


def _diff(a, b, path=()):
    """The dotted paths where two nested dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return sorted(p for k in a.keys() | b.keys()
                      for p in _diff(a.get(k), b.get(k), path + (k,)))
    return [".".join(map(str, path))] if a != b else []


def test_rank_by_changes_the_ranking_score_and_nothing_else():
    records = _disagreeing()
    by_w = summarise(_params(), records)
    by_a = summarise(_params(report={"rank_by": "cumulative_alpha"}), records)
    w, a = by_w["methods"]["alphavil"], by_a["methods"]["alphavil"]
    assert w["ranking_weights"] == 1.0 and a["ranking_cumulative_alpha"] == 0.0
    assert a["ranking_cumulative_alpha_per_seed"] == dict.fromkeys(map(str, SEEDS), 0.0)
    assert a["by_epoch"]["ep0"]["ranking_cumulative_alpha_per_seed"]["0"] == 0.0
    assert w["ranking_alpha"] == a["ranking_alpha"]  # the final α's stays as it was
    changed = {p.split(".")[-1] if "by_epoch" not in p else "by_epoch." + p.split(".")[-1]
               for p in _diff(by_w, by_a)}
    assert changed == {"ranking_weights", "ranking_weights_per_seed",
                       "ranking_cumulative_alpha", "ranking_cumulative_alpha_per_seed",
                       "by_epoch.ranking_weights_per_seed",
                       "by_epoch.ranking_cumulative_alpha_per_seed"}
    md_w, md_a = markdown(by_w, _params()), markdown(by_a, _params())
    assert "final weight 1.000" in md_w and "cumulative α 0.000" in md_a
    assert [x for x in md_w.splitlines() if x not in md_a.splitlines()] == \
        [x for x in md_w.splitlines() if x.startswith("Ranking against")]


# --- the weights plot from a results folder ---------------------------------------------

def test_weights_png_is_byte_identical_between_renders_and_follows_the_weights(tmp_path):
    params = _params()
    records = _records()
    summary = summarise(params, records)
    weights_png(records, summary, tmp_path / "a.png")
    weights_png(records, summary, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    moved = _records(weights=lambda s, n: {"left": 1.0, "good": 1.0 + 0.5 * n, "bad": 1.0,
                                           "noise": 1.0})
    weights_png(moved, summary, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes() != (tmp_path / "a.png").read_bytes()


def test_weights_png_labels_the_target_and_verdicts_and_draws_what_the_stage_draws(tmp_path):
    from alphavil.report import plots

    params = _params()
    records = _records()
    summary = summarise(params, records)
    assert plots.verdict_labels(records, summary) == {
        "left": "left (target)", "good": "good (helped)", "bad": "bad (hurt)",
        "noise": "noise (no evidence)"}
    # given the stage's legend, the same bytes as the evaluate stage's weights.png
    write_reports(params, records, out=tmp_path / "metrics")
    weights_png(records, summary, tmp_path / "w.png", plots.task_labels(params))
    assert (tmp_path / "w.png").read_bytes() == \
        (tmp_path / "metrics/plots/weights.png").read_bytes()
