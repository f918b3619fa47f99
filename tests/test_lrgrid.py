"""alphavil/lrgrid.py: each method's lr chosen on dev over a grid, tested on fresh seeds.

The unit tests feed hand-written `dvc exp show --json` in DVC 3.67.1's structure (learnt
from a real run); one integration test runs `select` for real on the tiny pipeline."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from scipy import stats

from alphavil.workflow import expqueue, lrgrid
from alphavil.config import ParamsError
from testkit.params import tiny_raw
from testkit.dvcrepo import DvcRepo

METHODS = ["alphavil", "single_task", "uniform"]


def summary(dev: dict, per_seed: dict, best_dev: dict | None = None) -> dict:
    """metrics/summary.json of one experiment: final dev (a mean over seeds) and per-seed
    final test per method; `test` is the mean of per_seed, best_dev a decoy."""
    seeds = len(next(iter(per_seed.values())))
    methods = {}
    for m in dev:
        ps = per_seed[m]
        methods[m] = {"dev": dev[m], "test": sum(ps.values()) / len(ps), "test_std": 0.0,
                      "best_dev": {"dev": (best_dev or {}).get(m, dev[m]), "test": 0.5,
                                   "test_std": 0.0},
                      "per_seed_test": ps}
    return {"metric": "acc", "target": "left", "epochs": 2, "seeds": seeds,
            "methods": methods}


def experiment(name: str, lr: float, seeds: list[int], metrics: dict | None,
               state: str = "success", **params_change) -> dict:
    params = tiny_raw(**{"seeds": seeds, "baselines": METHODS[1:], **params_change})
    params["train"]["lr"] = lr
    rev = "ab" * 20
    data = {"rev": rev, "timestamp": "2026-12-01T00:16:11", "params": {
        "params.yaml": {"data": params}}, "deps": {}, "outs": {}, "meta": {},
        "metrics": {"metrics/summary.json": {"data": metrics} if metrics else {
            "error": {"type": "FileNotFoundError", "msg": "No such file"}}}}
    error = {"msg": "Experiment run failed", "type": ""} if state == "failed" else None
    return {"revs": [{"rev": rev, "name": name, "data": data, "error": error,
                      "experiments": None}],
            "executor": {"state": state, "name": "dvc-task", "local": {"returncode": 0}},
            "name": name}


def exp_show(*experiments) -> list:
    """The list `dvc exp show --json` prints: the workspace, then the baseline commit with
    its experiments."""
    workspace = {"rev": "workspace", "name": None, "error": None, "experiments": None,
                 "data": {"rev": "workspace", "params": {}, "metrics": {}}}
    return [workspace, {"rev": "cd" * 20, "name": "main", "error": None,
                        "data": {"rev": "cd" * 20, "params": {}, "metrics": {}},
                        "experiments": list(experiments)}]


GRID = [0.0003, 0.001, 0.003]
SEEDS = [0, 1, 2]
# final dev (mean over seeds) per lr: alphavil best at 0.003, single_task at 0.0003, uniform
# at 0.001. Decoys: alphavil's test is best at 0.001, single_task's seed 0 test best at
# 0.003 and uniform's best-epoch dev best at 0.0003.
DEV = {0.0003: {"alphavil": 0.80, "single_task": 0.78, "uniform": 0.70},
       0.001: {"alphavil": 0.82, "single_task": 0.75, "uniform": 0.79},
       0.003: {"alphavil": 0.85, "single_task": 0.71, "uniform": 0.72}}
BEST_DEV = {0.0003: {"uniform": 0.95}}
TEST = {0.0003: {"alphavil": [0.70, 0.71, 0.72], "single_task": [0.60, 0.80, 0.81],
                 "uniform": [0.66, 0.67, 0.68]},
        0.001: {"alphavil": [0.90, 0.91, 0.92], "single_task": [0.61, 0.62, 0.63],
                "uniform": [0.70, 0.71, 0.72]},
        0.003: {"alphavil": [0.75, 0.76, 0.77], "single_task": [0.99, 0.50, 0.50],
                "uniform": [0.65, 0.66, 0.67]}}


def per_seed(values: dict, seeds: list[int]) -> dict:
    return {m: dict(zip(map(str, seeds), v)) for m, v in values.items()}


def grid_show(**params_change) -> list:
    return exp_show(*[experiment(f"lrsel-{lrgrid.lr_text(lr)}", lr, SEEDS,
                                 summary(DEV[lr], per_seed(TEST[lr], SEEDS), BEST_DEV.get(lr)))
                      for lr in GRID])


def test_exp_records_reads_dvc_structure():
    show = exp_show(experiment("lrsel-0.001", 0.001, SEEDS,
                               summary(DEV[0.001], per_seed(TEST[0.001], SEEDS))),
                    experiment("bad", 0.002, SEEDS, None, state="failed"))
    records = expqueue.exp_records(show)
    assert [r["name"] for r in records] == ["lrsel-0.001", "bad"]  # not the workspace
    assert records[0]["params"]["train"]["lr"] == 0.001 and not records[0]["failed"]
    assert records[0]["metrics"]["methods"]["uniform"]["dev"] == 0.79
    assert records[1]["failed"] and records[1]["metrics"] is None
    assert expqueue.finished(records, ["lrsel-0.001"]) == [records[0]]
    with pytest.raises(ParamsError, match="'bad' failed"):
        expqueue.finished(records, ["lrsel-0.001", "bad"])
    with pytest.raises(ParamsError, match="'other' is missing"):
        expqueue.finished(records, ["other"])


def test_select_picks_each_methods_best_mean_dev():
    sel = lrgrid.select(expqueue.exp_records(grid_show()), GRID, SEEDS, default_lr=0.001)
    chosen = {m: e["lr"] for m, e in sel["methods"].items()}
    # by test: alphavil 0.001; by seed 0's test: single_task 0.003; by best-epoch dev:
    # uniform 0.0003; one lr for all methods: not three different ones
    assert chosen == {"alphavil": 0.003, "single_task": 0.0003, "uniform": 0.001}
    # the grid's largest and smallest lr are flagged: the best may lie beyond them
    assert {m: e["at_edge"] for m, e in sel["methods"].items()} == {
        "alphavil": True, "single_task": True, "uniform": False}
    assert "edge (the best lr may lie beyond it): alphavil, single_task" in \
        lrgrid.selection_table(sel)
    assert sel["methods"]["uniform"]["dev"] == 0.79
    assert sel["methods"]["single_task"]["dev_by_lr"] == {"0.0003": 0.78, "0.001": 0.75,
                                                          "0.003": 0.71}
    assert sel["grid"] == GRID and sel["seeds"] == SEEDS and sel["default_lr"] == 0.001
    assert sel["experiments"] == ["lrsel-0.0003", "lrsel-0.001", "lrsel-0.003"]
    assert "lr" not in sel["fixed_params"]["train"] and "seeds" not in sel["fixed_params"]


def test_an_lr_where_a_method_diverged_is_not_a_candidate_for_it_but_stays_for_others():
    """train.on_divergence: mark (which lrgrid sets) reports a diverged baseline instead of
    failing the experiment: alphavil's best dev (0.003) is out for it only when it diverged
    there (the selector treats every method alike), and single_task's divergence at 0.003
    leaves alphavil's choice alone."""
    show = grid_show()
    at_003 = show[1]["experiments"][2]["revs"][0]["data"]["metrics"]["metrics/summary.json"]
    at_003["data"]["methods"]["single_task"]["diverged"] = {"1": "ep1"}
    sel = lrgrid.select(expqueue.exp_records(show), GRID, SEEDS, default_lr=0.001)
    assert {m: e["lr"] for m, e in sel["methods"].items()} == {
        "alphavil": 0.003, "single_task": 0.0003, "uniform": 0.001}
    assert sel["methods"]["single_task"]["diverged_at"] == ["0.003"]
    at_003["data"]["methods"]["alphavil"]["diverged"] = {"0": "ep0"}
    sel = lrgrid.select(expqueue.exp_records(show), GRID, SEEDS, default_lr=0.001)
    e = sel["methods"]["alphavil"]
    assert e["lr"] == 0.001 and e["dev"] == 0.82 and e["diverged_at"] == ["0.003"]
    assert not e["at_edge"]  # the next lr up diverged: nothing beyond 0.001 to try
    assert "| alphavil | 80.00 | 82.00 * | 85.00 (diverged) |" in lrgrid.selection_table(sel)
    for lr in GRID[:2]:
        m = show[1]["experiments"][GRID.index(lr)]["revs"][0]["data"]["metrics"]
        m["metrics/summary.json"]["data"]["methods"]["alphavil"]["diverged"] = {"0": "ep0"}
    with pytest.raises(ParamsError, match="alphavil: diverged at every train.lr"):
        lrgrid.select(expqueue.exp_records(show), GRID, SEEDS, default_lr=0.001)


def git_repo(folder: Path, files: dict[str, str]) -> Path:
    """A git repository at `folder` with `files` (path: text) committed."""
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t",
                                                 "commit", "-qm", "committed"]):
        subprocess.run(["git", "-C", str(folder), *cmd], check=True)
    return folder


def test_the_grid_runs_with_diverging_baselines_marked_not_fatal(tmp_path):
    git_repo(tmp_path, {"params.yaml": yaml.safe_dump(tiny_raw())})
    assert tiny_raw()["train"]["on_divergence"] == "stop"
    assert lrgrid.base_params([], tmp_path)["train"]["on_divergence"] == "mark"


def test_the_grid_runs_the_committed_study_or_overlays_never_the_workspace_params(
        tmp_path, monkeypatch):
    """A study file gives the grid its baselines and settings (variants) from git HEAD: the
    workspace's params.yaml, which `alphavil.workflow.study CONFIG` and the queue rewrite,
    plays no part, and an uncommitted or edited study or overlay is refused."""
    study = {"overlays": ["configs/noise.yaml"], "seeds": [0], "data_seed": 3,
             "baselines": ["uniform", "diw"], "set": {"alpha.combine": "mean"}}
    git_repo(tmp_path, {"params.yaml": yaml.safe_dump(tiny_raw(baselines=["single_task"])),
                        "configs/noise.yaml": yaml.safe_dump({"tasks": {
                            "left": {"label": "left"}, "right": {"label": "right"},
                            "noise": {"label": "left", "label_noise": 1.0}}}),
                        "studies/variant.yaml": yaml.safe_dump(study)})
    monkeypatch.chdir(tmp_path)
    # the workspace's params.yaml says otherwise: it must not matter
    Path("params.yaml").write_text(yaml.safe_dump(tiny_raw(baselines=["gcs"], alpha={
        "combine": "sum", "steps": 9})))
    base = lrgrid.base_params([Path("studies/variant.yaml")])
    assert base["baselines"] == ["uniform", "diw"] and base["alpha"]["combine"] == "mean"
    assert base["data"]["seed"] == 3 and "noise" in base["tasks"]
    assert base["alpha"]["steps"] == tiny_raw()["alpha"]["steps"]  # HEAD's, not 9
    over = lrgrid.base_params([Path("configs/noise.yaml")])
    assert over["baselines"] == ["single_task"] and over["alpha"]["combine"] == "sum"
    assert "noise" in over["tasks"]
    assert lrgrid.base_params([])["baselines"] == ["single_task"]
    Path("studies/variant.yaml").write_text(yaml.safe_dump({**study, "baselines": ["gcs"]}))
    with pytest.raises(ParamsError, match="studies/variant.yaml: differs from its version"):
        lrgrid.base_params([Path("studies/variant.yaml")])
    Path("configs/new.yaml").write_text(yaml.safe_dump({"baselines": ["gcs"]}))
    with pytest.raises(ParamsError, match="configs/new.yaml: not committed"):
        lrgrid.base_params([Path("configs/new.yaml")])


def test_ties_go_to_the_lr_nearest_the_default_on_a_log_scale_then_the_smaller():
    assert lrgrid.choose({0.0003: 0.8, 0.001: 0.8, 0.003: 0.7}, 0.001) == 0.001
    # 0.003 is nearer 0.001 than 0.0003 is on a log scale (3x vs 3.33x), not in absolute terms
    assert lrgrid.choose({0.0003: 0.8, 0.003: 0.8}, 0.001) == 0.003
    assert lrgrid.choose({0.0005: 0.8, 0.002: 0.8}, 0.001) == 0.0005  # equally near
    assert lrgrid.choose({0.0001: 0.8, 0.01: 0.8}, 0.001) == 0.0001  # logs differ in a bit
    assert lrgrid.choose({0.0005: 0.8, 0.002: 0.8 + 1e-9}, 0.001) == 0.002  # not a tie


@pytest.mark.parametrize("change, key", [
    ({"alpha": {"steps": 4}}, "alpha.steps"),
    ({"train": {"batch_size": 16}}, "train.batch_size"),
    ({"baselines": ["single_task"]}, "baselines"),
])
def test_experiments_differing_beyond_train_lr_are_refused(change, key):
    show = grid_show()
    odd = experiment("lrsel-0.001", 0.001, SEEDS, summary(DEV[0.001],
                                                          per_seed(TEST[0.001], SEEDS)),
                     **change)
    show[1]["experiments"][1] = odd
    with pytest.raises(ParamsError, match=rf"params key {key} differs"):
        lrgrid.select(expqueue.exp_records(show), GRID, SEEDS, 0.001)


def test_experiments_with_other_seeds_or_a_repeated_lr_are_refused():
    show = grid_show()
    show[1]["experiments"][1] = experiment(
        "lrsel-0.001", 0.001, [0, 1, 3], summary(DEV[0.001], per_seed(TEST[0.001], [0, 1, 3])))
    with pytest.raises(ParamsError, match=r"seeds \[0, 1, 3\] where \[0, 1, 2\]"):
        lrgrid.select(expqueue.exp_records(show), GRID, SEEDS, 0.001)
    show = grid_show()
    show[1]["experiments"][2]["revs"][0]["data"]["params"]["params.yaml"]["data"]["train"][
        "lr"] = 0.001
    with pytest.raises(ParamsError, match="both have train.lr 0.001"):
        lrgrid.select(expqueue.exp_records(show), GRID, SEEDS, 0.001)


def selection(lrs: dict) -> dict:
    return {"methods": {m: {"lr": lr, "dev": 0.8, "dev_by_lr": {}} for m, lr in lrs.items()},
            "grid": GRID, "seeds": SEEDS, "default_lr": 0.001, "metric": "acc",
            "experiments": [], "fixed_params": lrgrid.fixed_params(tiny_raw(
                baselines=METHODS[1:]))}


TEST_SEEDS = [5, 6, 7, 8, 9]
# per-seed test accuracy of each method in the experiment at each lr
AT = {0.003: {"alphavil": [0.81, 0.84, 0.80, 0.86, 0.83], "single_task": [0.1] * 5,
              "uniform": [0.2] * 5},
      0.0003: {"alphavil": [0.3] * 5, "single_task": [0.78, 0.80, 0.79, 0.77, 0.82],
               "uniform": [0.4] * 5},
      0.001: {"alphavil": [0.5] * 5, "single_task": [0.6] * 5,
              "uniform": [0.80, 0.85, 0.74, 0.86, 0.79]}}


def test_report_pairs_each_method_at_its_own_lr_against_scipy():
    sel = selection({"alphavil": 0.003, "single_task": 0.0003, "uniform": 0.001})
    show = exp_show(*[experiment(f"lrtest-{lr}", lr, TEST_SEEDS,
                                 summary({m: 0.5 for m in METHODS}, per_seed(AT[lr], TEST_SEEDS)))
                      for lr in (0.0003, 0.001, 0.003)])
    t = lrgrid.tested(sel, expqueue.exp_records(show), TEST_SEEDS)
    a = AT[0.003]["alphavil"]
    assert t["methods"]["alphavil"]["test"] == pytest.approx(sum(a) / 5)
    assert t["methods"]["uniform"]["test_std"] == pytest.approx(
        stats.tstd(AT[0.001]["uniform"]))
    assert t["methods"]["single_task"]["experiment"] == "lrtest-0.0003"
    p = {}
    for m, lr in (("single_task", 0.0003), ("uniform", 0.001)):
        b = AT[lr][m]
        ref = stats.ttest_rel(a, b)
        ci = ref.confidence_interval(0.95)
        c = t["alphavil_vs"][m]
        assert c["mean_diff"] == pytest.approx(sum(x - y for x, y in zip(a, b)) / 5)
        assert c["p_value"] == pytest.approx(ref.pvalue)
        assert (c["ci95_low"], c["ci95_high"]) == pytest.approx((ci.low, ci.high))
        assert c["wins"] == sum(x > y for x, y in zip(a, b)) and c["n"] == 5
        p[m] = ref.pvalue
    lo, hi = sorted(p, key=p.get)  # Holm with k = 2, by hand
    assert t["alphavil_vs"][lo]["p_holm"] == pytest.approx(min(1, 2 * p[lo]))
    assert t["alphavil_vs"][hi]["p_holm"] == pytest.approx(max(min(1, 2 * p[lo]), p[hi]))
    md = lrgrid.tested_markdown(t)
    assert "| uniform | 0.001 |" in md and "| alphavil | 0.003 |" in md
    assert "diverged" not in md and "diverged" not in t["methods"]["uniform"]
    # a baseline that diverges on a fresh seed at its selected lr is reported as such
    at_001 = show[1]["experiments"][1]["revs"][0]["data"]["metrics"]["metrics/summary.json"]
    at_001["data"]["methods"]["uniform"]["diverged"] = {"7": "ep1"}
    t = lrgrid.tested(sel, expqueue.exp_records(show), TEST_SEEDS)
    assert t["methods"]["uniform"]["diverged"] == {"7": "ep1"}
    assert "diverged" not in t["methods"]["single_task"]
    assert "**uniform diverged** at its lr (seed 7 in ep1)" in lrgrid.tested_markdown(t)


def test_report_refuses_test_runs_with_other_params_than_the_selection():
    sel = selection({"alphavil": 0.003, "single_task": 0.003, "uniform": 0.003})
    show = exp_show(experiment("lrtest-0.003", 0.003, TEST_SEEDS,
                               summary({m: 0.5 for m in METHODS}, per_seed(AT[0.003],
                                                                           TEST_SEEDS)),
                               alpha={"steps": 9}))
    with pytest.raises(ParamsError, match="params key alpha.steps differs"):
        lrgrid.tested(sel, expqueue.exp_records(show), TEST_SEEDS)


def test_test_seeds_used_in_the_selection_are_refused_before_dvc_runs(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.chdir(git_repo(tmp_path, {"params.yaml": yaml.safe_dump(
        tiny_raw(baselines=METHODS[1:]))}))
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/lr_selection.json").write_text(json.dumps(
        selection({m: 0.001 for m in METHODS})))

    def no_dvc(*args, **kw):
        raise AssertionError(f"dvc {args} called")

    monkeypatch.setattr(expqueue, "_dvc", no_dvc)
    assert lrgrid.main(["test", "--seeds", "5,2,6"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "[2] took part in the selection" in err[0]
    assert not (tmp_path / "metrics/lr_tested.json").exists()
    # other overlays than the selection's: refused before DVC too
    git_repo(tmp_path, {"over.yaml": "alpha: {init: 1.0, steps: 7, lr: 0.05, "
                        "optimizer: adam, batch_size: 32, guard: false, combine: sum, fit: budget}\n"})
    assert lrgrid.main(["test", "--seeds", "5,6", "over.yaml"]) == 2
    assert "params key alpha.steps differs" in capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    (["select", "--grid", "0.001,0.001", "--seeds", "0"], "--grid: expected"),
    (["select", "--grid", "0.001,-1", "--seeds", "0"], "--grid: expected"),
    (["select", "--grid", "0.001,1e-13", "--seeds", "0"], "--grid: expected"),
    (["select", "--grid", "0.001", "--seeds", "0,x"], "--seeds: expected"),
    (["select", "--grid", "0.001", "--seeds", "0,-1"], "--seeds: expected"),
    (["test", "--seeds", "5,...,14"], "--seeds: expected"),
    (["select", "--grid", "0.001", "--seeds", "0", "-j", "0"], "-j: expected"),
])
def test_bad_arguments_are_one_line_errors(argv, expected, monkeypatch, capsys):
    monkeypatch.setattr(expqueue, "_dvc", lambda *a, **k: pytest.fail("dvc called"))
    assert lrgrid.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]


def test_an_epoch_lr_override_is_refused(tmp_path, monkeypatch, capsys):
    """An epoch's `overrides.lr` replaces train.lr there: the grid would not act on it."""
    raw = tiny_raw()
    raw["epochs"][1]["overrides"] = {"lr": 0.01}
    monkeypatch.chdir(git_repo(tmp_path, {"params.yaml": yaml.safe_dump(raw)}))
    monkeypatch.setattr(expqueue, "_dvc", lambda *a, **k: pytest.fail("dvc called"))
    assert lrgrid.main(["select", "--grid", "0.001,0.003", "--seeds", "0"]) == 2
    assert "epochs[1].overrides.lr: expected none" in capsys.readouterr().err


def test_lr_text_reads_back_as_the_same_float():
    for lr in (1e-05, 0.0003, 0.001, 0.1, 2.0):
        text = lrgrid.lr_text(lr)
        assert "e" not in text and yaml.safe_load(text) == lr


def test_busy_names_reads_queue_status():
    status = ("Task     Name         Created    Status\n"
              "b536ef1  lrsel-0.001  12:14 AM   Running\n"
              "ff3fe03  lrsel-0.003  Nov 30     Queued\n"
              "5105811  bad          12:16 AM   Failed\n"
              "0a1b2c3  lrsel-0.01   12:14 AM   Success\n\n"
              "Worker status: 1 active, 0 idle\n")
    assert expqueue.busy_names(status) == {"lrsel-0.001", "lrsel-0.003"}


@pytest.mark.integration
def test_select_through_a_real_dvc_queue(tmp_path):
    """`select` with a 2-value grid and 1 seed on the tiny pipeline (1 epoch, 1 baseline):
    lr_selection.json agrees with the metrics DVC recorded per experiment."""
    raw = tiny_raw(baselines=["single_task"])
    raw["epochs"] = raw["epochs"][:1]
    repo = DvcRepo(tmp_path, raw)
    before = repo.read("params.yaml")
    repo.run(sys.executable, "-m", "alphavil.workflow.lrgrid", "select", "--grid", "0.001,0.01",
             "--seeds", "0")
    assert repo.read("params.yaml") == before  # the queue's params were put back
    sel = json.loads(repo.read("metrics/lr_selection.json"))
    show = json.loads(repo.dvc("exp", "show", "--json").stdout)
    runs = {}
    for group in show[1]["experiments"]:
        (rev,) = group["revs"]
        data = rev["data"]
        params = data["params"]["params.yaml"]["data"]
        assert group["executor"]["state"] == "success" and params["seeds"] == [0]
        assert params["model"] == raw["model"] and params["epochs"] == raw["epochs"]
        runs[params["train"]["lr"]] = data["metrics"]["metrics/summary.json"]["data"]
    assert sorted(runs) == [0.001, 0.01] and sorted(sel["experiments"]) == [
        "lrsel-0.001", "lrsel-0.01"]
    assert sorted(sel["methods"]) == ["alphavil", "single_task"]
    for m, e in sel["methods"].items():
        dev = {lr: s["methods"][m]["dev"] for lr, s in runs.items()}
        assert e["dev_by_lr"] == {"0.001": dev[0.001], "0.01": dev[0.01]}
        best = max(dev.values())  # a tie goes to the default, 0.001
        assert e["lr"] == (0.001 if math.isclose(dev[0.001], best) else 0.01)
        assert e["dev"] == dev[e["lr"]]
