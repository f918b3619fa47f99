"""Caching behaviour of the pipeline through real `dvc repro` on a tiny configuration
(one seed, one baseline: the full table is tests/test_table_dvc.py)."""

import json
import math

import pytest
import yaml

from testkit.params import tiny_raw
from testkit.dvcrepo import DvcRepo

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    r = DvcRepo(tmp_path_factory.mktemp("pipeline"), tiny_raw(baselines=["single_task"]))
    r.ran_first = r.repro(warm=True)  # the worker's bytes; the -f rerun below is cold
    r.commit("first run")
    return r


def test_first_repro_runs_every_stage_and_writes_metrics(repo):
    ran = repo.ran_first
    assert "prepare" in ran and "train_base@0" in ran and "evaluate" in ran
    for ep in ("ep0", "ep1"):
        for task in ("left", "right"):
            assert f"finetune@0-{ep}-{task}" in ran
            assert (repo.path / f"deltas/s0/{ep}/{task}.safetensors").is_file()
        assert f"estimate_alpha@0-{ep}" in ran and f"merge@0-{ep}" in ran
        assert (repo.path / f"checkpoints/s0/{ep}/model.safetensors").is_file()
    summary = json.loads(repo.read("metrics/summary.json"))
    entry = summary["methods"]["alphavil"]
    for value in (entry["test"], entry["dev"], entry["best_dev"]["test"]):
        assert 0.0 <= value <= 1.0 and math.isfinite(value)
    assert set(entry["final_weight"]) == {"left", "right"}
    for png in ("curves.png", "weights.png"):  # both declared plots of evaluate
        assert (repo.path / "metrics/plots" / png).stat().st_size > 1000
    assert b"alphavil" in repo.read("metrics/summary.md")


def test_second_repro_is_a_no_op(repo):
    assert repo.repro() == []
    assert repo.dvc("status", "-q", check=False).returncode == 0


def test_repro_from_scratch_is_byte_identical(repo):
    lock = repo.read("dvc.lock")
    summary = repo.read("metrics/summary.json")
    repo.repro("-f")
    assert repo.read("dvc.lock") == lock
    assert repo.read("metrics/summary.json") == summary


def test_later_epoch_override_reruns_only_that_epoch_onward(repo):
    params = repo.params()
    params["epochs"][1]["overrides"] = {"sample_ratio": 0.5}
    repo.write_params(params)
    ran = set(repo.repro(warm=True))
    # baselines train all epochs in one stage, so they re-run too
    assert ran == {"finetune@0-ep1-left", "finetune@0-ep1-right", "estimate_alpha@0-ep1",
                   "merge@0-ep1", "train_method@single_task-0", "evaluate"}


def test_adding_an_epoch_runs_only_the_new_one(repo):
    repo.run("python", "-m", "alphavil.workflow.schedule", "3")
    ran = set(repo.repro(warm=True))
    assert ran == {"finetune@0-ep2-left", "finetune@0-ep2-right", "estimate_alpha@0-ep2",
                   "merge@0-ep2", "train_method@single_task-0", "evaluate"}
    summary = json.loads(repo.read("metrics/summary.json"))
    assert summary["epochs"] == 3
    repo.commit("three epochs")


def test_shrinking_drops_stale_lock_entries_and_regrowing_is_served_from_run_cache(repo):
    three_epochs = {rel: repo.read(rel) for rel in ("dvc.lock", "metrics/summary.json")}
    out = repo.run("python", "-m", "alphavil.workflow.schedule", "2").stdout
    assert "dropped 4 entries" in out
    lock = yaml.safe_load(repo.read("dvc.lock"))["stages"]
    assert not [name for name in lock if "-ep2" in name]
    assert "merge@0-ep1" in lock
    # The baseline ran at 2 epochs before, so DVC's run cache restores it. evaluate's
    # outputs are git-tracked (cache: false), which the run cache cannot restore: it
    # runs again, deterministically.
    assert repo.repro() == ["evaluate"]
    assert json.loads(repo.read("metrics/summary.json"))["epochs"] == 2
    repo.run("python", "-m", "alphavil.workflow.schedule", "3")
    assert repo.repro() == ["evaluate"]
    assert repo.read("metrics/summary.json") == three_epochs["metrics/summary.json"]
    assert repo.read("dvc.lock") == three_epochs["dvc.lock"]
    assert repo.dvc("status", "-q", check=False).returncode == 0


def test_exp_run_with_a_param_change_shows_both_runs(repo):
    repo.dvc("exp", "run", "-S", "alphavil.sample_ratio=0.5", warm=True)
    shown = json.loads(repo.dvc("exp", "show", "--json").stdout)
    rows = []
    for commit in shown:
        rows.append(commit)
        for exp in commit.get("experiments") or []:
            rows.extend(exp["revs"])
    ratios, tests = [], []
    for row in rows:
        data = row.get("data") or {}
        p = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
        m = (data.get("metrics") or {}).get("metrics/summary.json", {}).get("data", {})
        if p and m:
            ratios.append(p["alphavil"]["sample_ratio"])
            tests.append(m["methods"]["alphavil"]["test"])
    # rows: the workspace (now the experiment's result), the commit, the experiment
    assert sorted(set(ratios)) == [0.5, 1.0], ratios
    assert all(0 <= t <= 1 for t in tests)
