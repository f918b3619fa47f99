"""The smallest comparison table (every method, 2 seeds, tiny data) through `dvc repro`."""

import json
import math

import pytest

from testkit.params import tiny_raw
from testkit.dvcrepo import DvcRepo

pytestmark = pytest.mark.integration

BASELINES = ["single_task", "uniform", "diw"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    r = DvcRepo(tmp_path_factory.mktemp("table"), tiny_raw(seeds=[0, 1], baselines=BASELINES))
    r.ran = r.repro(warm=True)
    return r


def test_every_method_and_seed_is_its_own_stage(repo):
    for seed in (0, 1):
        assert f"train_base@{seed}" in repo.ran
        assert f"merge@{seed}-ep1" in repo.ran
        for method in BASELINES:
            assert f"train_method@{method}-{seed}" in repo.ran
            assert (repo.path / f"baselines/{method}/s{seed}/ep1/model.safetensors").is_file()


def _in_unit(x):
    return isinstance(x, float) and math.isfinite(x) and 0.0 <= x <= 1.0


def test_summary_has_every_method_with_finite_numbers(repo):
    s = json.loads(repo.read("metrics/summary.json"))
    assert s["metric"] == "acc" and s["seeds"] == 2 and s["epochs"] == 2
    assert sorted(s["methods"]) == sorted(["alphavil"] + BASELINES)
    for e in s["methods"].values():
        assert _in_unit(e["test"]) and _in_unit(e["dev"]) and _in_unit(e["best_dev"]["test"])
        assert math.isfinite(e["test_std"]) and e["test_std"] >= 0
        assert sorted(e["per_seed_test"]) == ["0", "1"]
        assert all(_in_unit(v) for v in e["per_seed_test"].values())
        assert e["test"] == pytest.approx(sum(e["per_seed_test"].values()) / 2)
    for m in BASELINES:
        c = s["alphavil_vs"][m]
        assert c["n"] == 2 and 0 <= c["wins"] <= 2
        diff = s["methods"]["alphavil"]["test"] - s["methods"][m]["test"]
        assert c["mean_diff"] == pytest.approx(diff)
        if c["p_value"] is None:  # t undefined (the same difference on both seeds)
            assert c["ci95_low"] is c["ci95_high"] is c["p_holm"] is None
        else:  # the t interval and the t-test agree
            assert c["ci95_low"] < c["mean_diff"] < c["ci95_high"]
            assert (c["ci95_low"] > 0 or c["ci95_high"] < 0) == (c["p_value"] < 0.05)
            assert c["p_value"] <= c["p_holm"] <= 1


def test_markdown_table_and_plots(repo):
    md = repo.read("metrics/summary.md").decode()
    for m in ["alphavil"] + BASELINES:
        assert f"| {m} |" in md
    assert "paired" in md and "α / task weight" in md
    for m in ["alphavil"] + BASELINES:
        rows = repo.read(f"metrics/plots/target/{m}.csv").decode().strip().splitlines()
        assert rows[0] == "epoch,dev,test,dev_min,dev_max" and len(rows) == 1 + 3  # base + 2
    for t in ("left", "right"):
        assert (repo.path / f"metrics/plots/alphavil/{t}.csv").is_file()
    assert (repo.path / "metrics/plots/curves.png").stat().st_size > 1000


def test_dvc_plots_render_to_html(repo):
    repo.dvc("plots", "show", "-o", "plots_html")
    html = (repo.path / "plots_html/index.html").read_text()
    assert "target" in html and "alphavil" in html
