"""The report's statistics against independent values (closed forms, scipy.stats), and how
it shows α that was not estimated and merges alpha.guard refused."""

import csv
import math

import numpy as np
import pytest
import yaml
from scipy.stats import ttest_rel

from alphavil.config import validate
from alphavil.report import (ALPHA_CSV, REFUSED_LABEL, curves, curves_figure, data_range, holm,
                             markdown, paired_comparison, summarise, task_labels, weight_rows,
                             weights_figure, write_reports)
from testkit.params import ROOT, tiny_raw

# --- the paired comparison ---------------------------------------------------------------


def test_t_test_and_interval_match_the_closed_form_for_two_degrees_of_freedom():
    # differences 1, 2, 3: mean 2, sd 1, t = 2·√3 on 2 df. For 2 df the t CDF is
    # 1/2 + t / (2·√(2 + t²)), so p = 1 − t/√(2 + t²) = 1 − √(12/14), and the 97.5%
    # quantile solves t/√(2 + t²) = 0.95: t = 0.95·√(2 / (1 − 0.95²)).
    c = paired_comparison([11.0, 12.0, 13.0], [10.0, 10.0, 10.0])
    q = 0.95 * math.sqrt(2 / (1 - 0.95 ** 2))
    half = q * 1 / math.sqrt(3)
    assert c["mean_diff"] == pytest.approx(2.0)
    assert c["p_value"] == pytest.approx(1 - math.sqrt(12 / 14), rel=1e-9)
    assert (c["ci95_low"], c["ci95_high"]) == pytest.approx((2 - half, 2 + half), rel=1e-9)
    assert c["n"] == 3 and c["wins"] == 3


@pytest.mark.parametrize("a, b", [
    ([0.856, 0.874, 0.877, 0.878, 0.859], [0.834, 0.862, 0.867, 0.841, 0.848]),
    ([0.856, 0.874, 0.877, 0.878, 0.859], [0.864, 0.853, 0.882, 0.868, 0.834]),
    ([0.70, 0.71], [0.69, 0.73]),
    ([1.0, 2.5, -0.3, 4.0, 2.2, 0.1, 3.3], [0.5, 2.0, 0.1, 3.1, 2.3, -0.4, 2.0]),
])
def test_p_value_and_interval_agree_with_scipy_ttest_rel(a, b):
    c = paired_comparison(a, b)
    ref = ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert c["mean_diff"] == pytest.approx(float(np.mean(np.subtract(a, b))), abs=1e-15)
    assert c["p_value"] == pytest.approx(float(ref.pvalue), rel=1e-9)
    assert c["ci95_low"] == pytest.approx(float(ci.low), rel=1e-9)
    assert c["ci95_high"] == pytest.approx(float(ci.high), rel=1e-9)
    assert c["wins"] == sum(x > y for x, y in zip(a, b))


def test_the_interval_excludes_zero_exactly_when_p_is_below_five_percent():
    rng = np.random.default_rng(0)
    seen = set()
    for trial in range(300):
        n = int(rng.integers(2, 16))
        b = rng.normal(0.85, 0.02, n)
        a = b + rng.normal(rng.uniform(-0.02, 0.02), 0.01, n)
        c = paired_comparison(list(a), list(b))
        excludes = c["ci95_low"] > 0 or c["ci95_high"] < 0
        assert excludes == (c["p_value"] < 0.05), (trial, c)
        assert c["ci95_low"] < c["mean_diff"] < c["ci95_high"]
        seen.add(excludes)
    assert seen == {True, False}  # both sides of the boundary were exercised


def test_one_seed_or_the_same_difference_on_every_seed_leaves_t_undefined():
    one = paired_comparison([0.9], [0.8])
    assert one["mean_diff"] == pytest.approx(0.1) and one["wins"] == 1 and one["n"] == 1
    assert one["p_value"] is one["ci95_low"] is one["ci95_high"] is None
    # equal accuracy differences that float subtraction makes differ in the last bits
    b = [0.1, 0.137, 0.5]
    a = [x + 0.01 for x in b]
    assert np.ptp(np.subtract(a, b)) > 0
    for x, y in ((a, b), ([0.8, 0.7], [0.8, 0.7])):
        c = paired_comparison(x, y)
        assert c["p_value"] is c["ci95_low"] is c["ci95_high"] is None


# --- Holm ---------------------------------------------------------------------------------


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> ×3, ×2, ×1 = 0.03, 0.06, 0.04 -> monotone: 0.03, 0.06, 0.06
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx(
        {"a": 0.03, "b": 0.06, "c": 0.06})
    # the running maximum carries 0.06 over the smaller 0.025 × 2 = 0.05
    assert holm({"x": 0.02, "y": 0.025, "z": 0.5}) == pytest.approx(
        {"x": 0.06, "y": 0.06, "z": 0.5})
    assert holm({"x": 0.4, "y": 0.6}) == pytest.approx({"x": 0.8, "y": 0.8})
    assert holm({"x": 0.7, "y": 0.9}) == {"x": 1.0, "y": 1.0}  # capped at 1
    assert holm({"only": 0.03}) == {"only": 0.03}


def test_holm_counts_only_the_comparisons_that_have_a_p_value():
    assert holm({"a": 0.01, "b": None, "c": 0.04}) == pytest.approx(
        {"a": 0.02, "b": None, "c": 0.04})


# --- summary.json / summary.md from records ------------------------------------------------

SEEDS = [0, 1, 2]
BASELINES = ["single_task", "uniform", "diw"]
# final test accuracy per method and seed
FINAL = {"alphavil": [0.86, 0.88, 0.90], "single_task": [0.84, 0.85, 0.86],
         "uniform": [0.86, 0.86, 0.89], "diw": [0.87, 0.85, 0.91]}


def _params(guard=False):
    return validate(tiny_raw(seeds=SEEDS, baselines=BASELINES, alpha={"guard": guard}))


def _records(alpha_right=None, rejected=()):
    """Two epochs (ep0 -> n 1, ep1 -> n 2). alpha_right[(seed, n)] sets αVIL's α of `right`
    (None: not estimated); rejected: the (seed, n) whose merge alpha.guard refused."""
    alpha_right = alpha_right or {}
    records = []
    for m in ["alphavil"] + BASELINES:
        for s in SEEDS:
            for ep, n in (("base", 0), ("ep0", 1), ("ep1", 2)):
                acc = {0: 0.1 + 0.01 * s, 1: 0.7 + 0.02 * s, 2: FINAL[m][s]}[n]
                r = {"method": m, "seed": s, "epoch": ep, "n": n,
                     "dev": {"acc": acc - 0.01, "loss": 1.0}, "test": {"acc": acc, "loss": 1.0},
                     "weights": None, "alpha": None}
                if m == "alphavil" and n > 0:
                    r["weights"] = {"left": 1.0 + 0.1 * n, "right": 0.5 if n == 1 else 0.0}
                    r["alpha"] = {"left": 1.0 + 0.1 * s, "right": alpha_right.get((s, n), 0.5)}
                    if (s, n) in rejected:
                        r["merge_rejected"] = True
                elif n == 0:
                    r["weights"] = {"left": 1.0, "right": 1.0}
                records.append(r)
    return records


def test_summary_reports_t_interval_raw_and_holm_p_for_every_baseline():
    params = _params()
    s = summarise(params, _records())
    raw = {m: float(ttest_rel(FINAL["alphavil"], FINAL[m]).pvalue) for m in BASELINES}
    ranked = sorted(BASELINES, key=raw.get)
    by_hand, running = {}, 0.0
    for i, m in enumerate(ranked):
        running = max(running, min(1.0, (3 - i) * raw[m]))
        by_hand[m] = running
    for m in BASELINES:
        c = s["alphavil_vs"][m]
        assert set(c) == {"mean_diff", "ci95_low", "ci95_high", "p_value", "p_holm", "wins", "n"}
        ci = ttest_rel(FINAL["alphavil"], FINAL[m]).confidence_interval()
        assert (c["ci95_low"], c["ci95_high"]) == pytest.approx((ci.low, ci.high), rel=1e-9)
        assert c["p_value"] == pytest.approx(raw[m], rel=1e-9)
        assert c["p_holm"] == pytest.approx(by_hand[m], rel=1e-9)
        assert c["p_holm"] >= c["p_value"]
    md = markdown(s, params)
    assert ("| baseline | mean diff | 95% t CI | p (paired t) | p (Holm, 3 baselines) "
            "| αVIL wins |") in md
    c = s["alphavil_vs"]["single_task"]
    assert (f"| single_task | 3.00 | [{100 * c['ci95_low']:.2f}, {100 * c['ci95_high']:.2f}] "
            f"| {raw['single_task']:.3g} | {by_hand['single_task']:.3g} | 3/3 |") in md
    assert "bootstrap" not in md


def test_a_baseline_without_p_value_shows_n_a_and_leaves_holm_over_the_others():
    params = _params()
    records = _records()
    for r in records:  # uniform: αVIL + 0.01 on every seed, so zero variance
        if r["method"] == "uniform" and r["n"] == 2:
            r["test"]["acc"] = FINAL["alphavil"][r["seed"]] - 0.01
    s = summarise(params, records)
    assert s["alphavil_vs"]["uniform"]["p_value"] is None
    assert s["alphavil_vs"]["uniform"]["p_holm"] is None
    raw = {m: float(ttest_rel(FINAL["alphavil"], FINAL[m]).pvalue) for m in ("single_task", "diw")}
    lo, hi = sorted(raw.values())
    assert sorted(c["p_holm"] for m, c in s["alphavil_vs"].items() if m != "uniform") == \
        pytest.approx(sorted([2 * lo, max(2 * lo, hi)]))
    md = markdown(s, params)
    assert "p (Holm, 2 baselines)" in md
    assert "| uniform | 1.00 | n/a | n/a | n/a | 3/3 |" in md


# --- best-on-dev: per seed the epoch with the best target dev metric, its test metric ----


def _set(records, method, seed, n, dev, test):
    r = next(r for r in records if (r["method"], r["seed"], r["n"]) == (method, seed, n))
    r["dev"]["acc"], r["test"]["acc"] = dev, test


def test_best_on_dev_reports_the_test_metric_of_each_seeds_dev_peak_not_the_last_epoch():
    params = _params()
    records = _records()
    # seed 0 peaks on dev at ep0, seed 1 at ep1 (the last), seed 2 at ep0 again; the base
    # checkpoint's dev is higher than all of them but is no epoch of the method: not chosen
    for s, (dev0, test0, dev1, test1) in enumerate([(0.80, 0.60, 0.70, 0.90),
                                                     (0.70, 0.50, 0.75, 0.95),
                                                     (0.90, 0.65, 0.85, 0.99)]):
        _set(records, "uniform", s, 0, 0.99, 0.10)
        _set(records, "uniform", s, 1, dev0, test0)
        _set(records, "uniform", s, 2, dev1, test1)
    e = summarise(params, records)["methods"]["uniform"]
    chosen_test, chosen_dev = [0.60, 0.95, 0.65], [0.80, 0.75, 0.90]
    assert e["best_dev"]["test"] == pytest.approx(np.mean(chosen_test))
    assert e["best_dev"]["test_std"] == pytest.approx(np.std(chosen_test, ddof=1))
    assert e["best_dev"]["dev"] == pytest.approx(np.mean(chosen_dev))
    assert e["test"] == pytest.approx(np.mean([0.90, 0.95, 0.99]))  # final: the last epoch
    md = markdown(summarise(params, records), params)
    assert f"| {100 * np.mean(chosen_test):.2f} ± " in md.split("| uniform |")[1].split("\n")[0]


def test_best_on_dev_breaks_a_tie_by_the_earliest_epoch():
    # Equal dev scores (accuracies are multiples of 1/N, ties happen) go to the earliest
    # epoch: it is the checkpoint early stopping on dev keeps, since dev gives no reason to
    # train on; and the choice must not depend on the order the records were read in.
    params = _params()
    records = _records()
    for s in SEEDS:
        _set(records, "diw", s, 1, 0.8, 0.5 + 0.01 * s)
        _set(records, "diw", s, 2, 0.8, 0.9)
    for order in (records, records[::-1]):
        e = summarise(params, order)["methods"]["diw"]
        assert e["best_dev"]["test"] == pytest.approx(0.51)
        assert e["best_dev"]["dev"] == pytest.approx(0.8)


# --- α that was not estimated, merges that were refused ------------------------------------


def test_final_alpha_averages_only_the_seeds_that_estimated_it(tmp_path):
    params = _params()
    records = _records(alpha_right={(0, 2): None, (1, 2): 0.2, (2, 2): 0.4})
    s = summarise(params, records)
    e = s["methods"]["alphavil"]
    assert e["final_alpha"]["right"] == pytest.approx(0.3)  # (0.2 + 0.4) / 2, not / 3
    assert e["final_alpha_seeds"] == {"left": 3, "right": 2}
    assert e["final_alpha"]["left"] == pytest.approx(1.1)
    md = markdown(s, params, curves(params, records, "acc")[1])
    assert "| right | 0.000 | 0.300 (2/3) |" in md
    assert "| 2 | 1.100 / 1.200 | 0.300 (2/3) / 0.000 |" in md


def test_alpha_estimated_by_no_seed_is_missing_everywhere(tmp_path):
    params = _params()
    records = _records(alpha_right={(s, 2): None for s in SEEDS})
    summary = write_reports(params, records, out=tmp_path)
    e = summary["methods"]["alphavil"]
    assert e["final_alpha"]["right"] is None and e["final_alpha_seeds"]["right"] == 0
    md = (tmp_path / "summary.md").read_text()
    assert "| right | 0.000 | – |" in md
    assert "| 2 | 1.100 / 1.200 | – / 0.000 |" in md
    rows = list(csv.DictReader((tmp_path / "plots/alphavil/right.csv").open()))
    assert list(rows[0]) == ALPHA_CSV
    # NaN, not an empty cell: DVC's Vega-Lite template draws "" as 0; NaN leaves a gap
    assert [(r["epoch"], r["alpha"], r["alpha_seeds"]) for r in rows] == \
        [("1", "0.5", "3"), ("2", "NaN", "0")]
    assert float(rows[1]["weight"]) == 0.0
    fig = curves_figure(*curves(params, records, "acc"), "acc", "left", len(SEEDS))
    alpha_line = next(ln for ln in fig.axes[1].lines if ln.get_label() == "α right")
    assert alpha_line.get_xdata().tolist() == [1, 2]
    y = alpha_line.get_ydata()
    assert y[0] == 0.5 and math.isnan(y[1])  # a gap, not a stand-in 0 or 1


def test_refused_merges_are_counted_per_epoch_in_the_table_csv_and_plot(tmp_path):
    params = _params(guard=True)
    records = _records(rejected={(1, 1), (2, 1), (0, 2)})
    write_reports(params, records, out=tmp_path)
    md = (tmp_path / "summary.md").read_text()
    assert "| epoch | left | right | merges refused (alpha.guard) |" in md
    assert "| 1 | 1.100 / 1.100 | 0.500 / 0.500 | 2/3 |" in md
    assert "| 2 | 1.100 / 1.200 | 0.500 / 0.000 | 1/3 |" in md
    for t in ("left", "right"):
        rows = list(csv.DictReader((tmp_path / f"plots/alphavil/{t}.csv").open()))
        assert [r["merges_refused"] for r in rows] == ["2", "1"]
    fig = curves_figure(*curves(params, records, "acc"), "acc", "left", len(SEEDS))
    handles, labels = fig.axes[1].get_legend_handles_labels()
    assert labels.count(REFUSED_LABEL) == 1
    assert sorted(t.get_text() for t in fig.axes[1].texts if "seeds" in t.get_text()) == \
        ["1/3 seeds", "2/3 seeds"]


def test_without_refusals_the_plot_has_no_refusal_marker():
    params = _params(guard=True)
    records = _records()
    fig = curves_figure(*curves(params, records, "acc"), "acc", "left", len(SEEDS))
    assert REFUSED_LABEL not in fig.axes[1].get_legend_handles_labels()[1]
    assert "| 1 | 1.100 / 1.100 | 0.500 / 0.500 | 0/3 |" in markdown(
        summarise(params, records), params, curves(params, records, "acc")[1])


def test_csv_headers_hold_the_columns_dvc_yaml_plots_read(tmp_path):
    # the headers are the named rows' fields: renaming a field must not silently take away
    # the x or y that `dvc plots show` draws
    write_reports(_params(), _records(), out=tmp_path)
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["evaluate"]["plots"]
    headers = {"metrics/plots/target": ["epoch", "dev", "test", "dev_min", "dev_max"],
               "metrics/plots/alphavil": ["epoch", "alpha", "weight", "alpha_seeds",
                                          "merges_refused"]}
    for entry in plots:
        (path, spec), = entry.items()
        if path not in headers:
            continue  # the PNGs
        files = sorted((tmp_path / path.removeprefix("metrics/")).glob("*.csv"))
        assert files
        for f in files:
            header = f.read_text().splitlines()[0].split(",")
            assert header == headers[path] and {spec["x"], spec["y"]} <= set(header)
        headers.pop(path)
    assert not headers  # both CSV folders are still plots in dvc.yaml


# --- the accuracy curves --------------------------------------------------------------------


def test_accuracy_panel_starts_at_epoch_one_with_min_max_bars():
    params = _params()
    records = _records()
    acc, aw = curves(params, records, "acc")
    # dev per seed at n = 2 is FINAL - 0.01: the band is its min and max over seeds
    row = acc["uniform"][2]
    assert row.epoch == 2 and (row.dev_min, row.dev_max) == pytest.approx((0.85, 0.88))
    assert row.dev == pytest.approx(np.mean(FINAL["uniform"]) - 0.01)
    fig = curves_figure(acc, aw, "acc", "left", len(SEEDS))
    ax = fig.axes[0]
    xs = np.concatenate([ln.get_xdata() for ln in ax.lines])
    assert xs.min() > 0.5  # θ_0 (epoch 0, near chance) is not drawn
    assert ax.get_ylim()[0] > 0.5  # so the axis does not stretch down to ~0.1
    assert "θ₀, every method, 0.1;" in ax.get_xlabel()  # θ_0's mean dev acc is stated


def test_data_range_pads_the_span_by_hand():
    assert data_range([0.8, 0.9, 0.85]) == pytest.approx((0.795, 0.905))
    assert data_range([0.8, 0.8]) == pytest.approx((0.76, 0.84))  # flat: ±5% of the value


def _plotted_y(ax) -> np.ndarray:
    """Every y the accuracy panel draws: the mean markers and both ends of each min–max bar."""
    means = [ln.get_ydata() for ln in ax.lines]
    bars = [seg[:, 1] for c in ax.collections for seg in c.get_segments()]
    return np.concatenate(means + bars)


def test_accuracy_axis_is_set_from_the_data_and_holds_every_value_drawn():
    params = _params()
    records = _records()
    # one seed far below the others at epoch 1: its bar must stay on the panel
    low = next(r for r in records
               if (r["method"], r["seed"], r["n"]) == ("single_task", 0, 1))
    low["dev"]["acc"] = 0.3
    fig = curves_figure(*curves(params, records, "acc"), "acc", "left", len(SEEDS))
    ax = fig.axes[0]
    y = _plotted_y(ax)
    lo, hi = ax.get_ylim()
    assert y.min() == pytest.approx(0.3) and y.max() == pytest.approx(0.91 - 0.01)
    assert lo <= y.min() and y.max() <= hi  # nothing drawn is cut off
    span = y.max() - y.min()
    # no further than the margin from the data: not stretched to θ_0's 0.1 (or to 0)
    assert lo >= y.min() - 0.06 * span > 0.1 and hi <= y.max() + 0.06 * span


def _weighted_records():
    """_records with αVIL's weights varying over seeds: w = 1 + 0.1·n + 0.05·s for left and
    0.5 − 0.2·n + 0.1·s for right (n 0: the same initial 1.0 on every seed)."""
    records = _records()
    for r in records:
        if r["method"] == "alphavil":
            n, s = r["n"], r["seed"]
            r["weights"] = ({"left": 1.0, "right": 1.0} if n == 0 else
                            {"left": 1.0 + 0.1 * n + 0.05 * s, "right": 0.5 - 0.2 * n + 0.1 * s})
    return records


def test_weights_plot_draws_one_line_per_task_with_mean_and_min_max_band():
    params = _params()
    rows = weight_rows(params, _weighted_records())
    fig = weights_figure(rows, task_labels(params), len(SEEDS))
    ax = fig.axes[0]
    assert [ln.get_label() for ln in ax.lines] == ["left (target)", "right"]
    s = np.array(SEEDS)
    by_hand = {"left": [np.full(len(s), 1.0)] + [1.0 + 0.1 * n + 0.05 * s for n in (1, 2)],
               "right": [np.full(len(s), 1.0)] + [0.5 - 0.2 * n + 0.1 * s for n in (1, 2)]}
    for line, band, t in zip(ax.lines, ax.collections, ["left", "right"]):
        assert list(line.get_xdata()) == [0, 1, 2]
        assert line.get_ydata() == pytest.approx([w.mean() for w in by_hand[t]])
        # the shaded polygon spans exactly min..max over seeds at each epoch
        verts = band.get_paths()[0].vertices
        for n, w in enumerate(by_hand[t]):
            ys = verts[np.isclose(verts[:, 0], n), 1]
            assert (ys.min(), ys.max()) == pytest.approx((w.min(), w.max()))


def test_weights_legend_marks_each_tasks_role_where_params_gives_one():
    params = _params()
    raw = params.dump()
    raw["tasks"]["right"]["role"] = "harmful"
    raw["tasks"]["left"]["role"] = "helpful"
    labels = task_labels(validate(raw))
    assert labels == {"left": "left (target, helpful)", "right": "right (harmful)"}
    fig = weights_figure(weight_rows(params, _weighted_records()), labels, len(SEEDS))
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == \
        ["left (target, helpful)", "right (harmful)"]


def test_png_is_byte_identical_between_runs(tmp_path):
    params = _params(guard=True)
    records = _records(alpha_right={(0, 2): None}, rejected={(1, 1)})
    write_reports(params, records, out=tmp_path / "a")
    write_reports(params, records, out=tmp_path / "b")
    for png in ("curves.png", "weights.png"):
        assert (tmp_path / "a/plots" / png).read_bytes() == \
            (tmp_path / "b/plots" / png).read_bytes()


def test_the_majority_floor_is_the_share_of_the_targets_most_frequent_class(tmp_path):
    from safetensors.numpy import load_file

    from alphavil.report import majority_share
    from testkit.inprocess import run_stages

    raw = tiny_raw(baselines=["single_task"])
    raw["epochs"] = raw["epochs"][:1]
    summary = run_stages(raw, tmp_path)
    for split in ("dev", "test"):
        labels = load_file(tmp_path / f"data/prepared/{split}.safetensors")[f"label.{raw['target']}"]
        _, counts = np.unique(labels, return_counts=True)
        assert summary["majority"][split] == pytest.approx(counts.max() / len(labels))
    md = (tmp_path / "metrics/summary.md").read_text()
    assert f"test {100 * summary['majority']['test']:.2f}." in md
    # a regression target has no majority class
    import torch
    assert majority_share(torch.tensor([0.5, 1.5, 1.5])) is None
    assert majority_share(torch.tensor([2, 0, 2, 1])) == 0.5
