"""Committed studies (alphavil/workflow/studyfile.py, studyrun.py) and their comparison
(compare.py). Unit tests on hand-written files; integration tests run the real DVC queue
on the tiny pipeline, kill it and start two at once."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from scipy import stats

from alphavil.config import ParamsError
from alphavil.store.artifacts import ArtifactError
from alphavil.workflow import compare, expqueue, studyfile, studyrun
from testkit.dvcrepo import DvcRepo
from testkit.inprocess import run_stages
from testkit.params import ROOT, committed_params_text, tiny_raw


# --- study files ----------------------------------------------------------------------------

@pytest.fixture
def repo_dir(tmp_path, monkeypatch):
    """A git repository whose committed params.yaml is the project's, with configs/ and a
    workspace params.yaml changed after the commit (which a study must not read)."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "params.yaml").write_text(committed_params_text())
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "harmful.yaml").write_text(
        (ROOT / "configs" / "harmful.yaml").read_text())
    (tmp_path / "configs" / "heldout-seeds.yaml").write_text(
        (ROOT / "configs" / "heldout-seeds.yaml").read_text())
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "-C", str(tmp_path), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-qm", "x"], check=True,
                   env={**os.environ, **env})
    raw = yaml.safe_load(committed_params_text())
    raw["train"]["lr"] = 0.5  # a workspace edit, not committed
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_study(folder: Path, name: str, **spec) -> Path:
    path = folder / "studies" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_study_is_its_file_over_the_committed_defaults(repo_dir):
    path = write_study(repo_dir, "h", overlays=["configs/harmful.yaml"], seeds=[5, 6],
                       data_seed=3, baselines=["uniform"], set={"alpha.steps": 7})
    name, params = studyfile.study_params(Path("studies/h.yaml"))
    assert name == "h" and params.seeds == [5, 6] and params.baselines == ["uniform"]
    assert params.data.seed == 3 and params.alpha.steps == 7
    assert "noise" in params.tasks  # the overlay
    assert params.train.lr == 0.001  # committed, not the workspace's 0.5
    assert path.is_file()


def test_the_committed_heldout_study_confirms_the_default_study_on_fresh_seeds_and_data():
    os.chdir(ROOT)
    _, default = studyfile.study_params(Path("studies/default.yaml"))
    name, params = studyfile.study_params(Path("studies/heldout.yaml"))
    assert name == "heldout" and params.seeds == list(range(5, 15))
    assert not set(params.seeds) & set(default.seeds)  # seeds no choice looked at
    assert params.data.seed != default.data.seed  # and a fresh data draw
    # everything else is the default study's configuration
    strip = lambda p: {**p.dump(), "seeds": None, "data": {**p.dump()["data"], "seed": None}}
    assert strip(params) == strip(default)
    _, suite = studyfile.study_params(Path("studies/suite.yaml"))
    _, suite_heldout = studyfile.study_params(Path("studies/suite-heldout.yaml"))
    assert strip(suite) == strip(suite_heldout) and suite_heldout.seeds == params.seeds
    assert suite_heldout.data.seed == params.data.seed


@pytest.mark.parametrize("spec, message", [
    (dict(seeds=[1], baselines=["uniform"]), "missing keys \\['data_seed'\\]"),
    (dict(seeds=[1], data_seed=0, baselines=["uniform"], lr=1), "unknown keys \\['lr'\\]"),
    (dict(overlays=["configs/heldout-seeds.yaml"], seeds=[1], data_seed=0,
          baselines=["uniform"]), "seeds is also set by configs/heldout-seeds.yaml"),
    (dict(seeds=[1], data_seed=0, baselines=["uniform"], set={"train.lrr": 1}),
     "set.train.lrr: not a params.yaml key"),
    (dict(seeds=[1], data_seed=0, baselines=["uniform"], set={"data.seed": 1}),
     "set.data.seed: give it as the study's own key"),
    (dict(seeds=[1], data_seed=0, baselines=["nope"]), "baselines"),
    (dict(seeds=[], data_seed=0, baselines=["uniform"]), "seeds"),
])
def test_bad_study_files_are_one_line_errors(repo_dir, spec, message, capsys):
    write_study(repo_dir, "bad", **spec)
    with pytest.raises(ParamsError, match=message):
        studyfile.study_params(Path("studies/bad.yaml"))
    assert studyrun.main(["studies/bad.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_an_uncommitted_or_edited_study_file_is_refused_before_anything_runs(repo_dir, capsys):
    write_study(repo_dir, "fresh", seeds=[1], data_seed=0, baselines=["uniform"])
    assert studyrun.main(["studies/fresh.yaml"]) == 2
    assert "studies/fresh.yaml: not committed at git HEAD" in capsys.readouterr().err
    assert not Path(".dvc/tmp/alphavil-study.lock").exists() and not Path("results").exists()


# --- the lock and the results folder --------------------------------------------------------

def test_a_live_lock_refuses_and_a_dead_holders_lock_is_taken_over(tmp_path):
    lock = tmp_path / "study.lock"
    with studyrun.study_lock(lock, "first"):
        assert lock.read_text().split()[0] == str(os.getpid())
        with pytest.raises(ParamsError, match=f"pid {os.getpid()}: first"):
            with studyrun.study_lock(lock, "second"):
                pass
    assert not lock.exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f"{dead.pid} killed study\n")
    with studyrun.study_lock(lock, "third"):
        assert lock.read_text() == f"{os.getpid()} third\n"
    assert list(tmp_path.iterdir()) == []  # nothing left beside it


def test_the_lock_names_its_holder_from_the_moment_it_exists(tmp_path, monkeypatch):
    # an empty lock read by a second study would pass for a dead holder's and be taken over
    lock, seen, link = tmp_path / "study.lock", [], os.link

    def watched(src, dst):
        link(src, dst)
        seen.append(Path(dst).read_text())
    monkeypatch.setattr(os, "link", watched)
    with studyrun.study_lock(lock, "first"):
        pass
    assert seen == [f"{os.getpid()} first\n"]


def queue_status(rows: list[tuple[str, str]], active: int, idle: int) -> str:
    table = "".join(f"abc1234  {name}  Dec 05, 2026  {state}\n" for name, state in rows)
    return f"Task     Name  Created  Status\n{table}\nWorker status: {active} active, {idle} idle\n"


def fake_queue(monkeypatch, statuses: list[str]) -> list[tuple]:
    calls = []

    def dvc(*args, capture=False):
        calls.append(args)
        out = statuses.pop(0) if args[:2] == ("queue", "status") and len(statuses) > 1 \
            else statuses[0] if args[:2] == ("queue", "status") else ""
        return subprocess.CompletedProcess(args, 0, out, "")
    monkeypatch.setattr(expqueue, "_dvc", dvc)
    monkeypatch.setattr(expqueue, "dvc_records", lambda: [
        {"name": "a", "failed": False, "params": {}, "metrics": {}, "rev": "r"}])
    return calls


def test_workers_that_exit_with_experiments_queued_are_started_again(monkeypatch):
    # treeverse/dvc#10562: the queue's workers can exit while tasks are still queued
    stuck = queue_status([("a", "Queued")], 0, 0)
    calls = fake_queue(monkeypatch, [stuck] * 3 + [queue_status([("a", "Success")], 0, 0)])
    records = expqueue.run_queue(["a"], 2, poll_s=0, patience=3)
    assert [r["name"] for r in records] == ["a"]
    assert calls.count(("queue", "start", "-j", "2")) == 2  # the first start and one restart


def test_a_queue_that_never_moves_is_an_error_naming_the_experiments(monkeypatch):
    fake_queue(monkeypatch, [queue_status([("a", "Running"), ("b", "Success")], 0, 0)])
    with pytest.raises(ArtifactError, match=r"\['a'\] stay queued or running with no queue "
                       r"worker alive.*dvc queue remove a"):
        expqueue.run_queue(["a", "b"], 1, poll_s=0, patience=2, restarts=2)


def test_a_busy_worker_is_waited_for_however_long_it_runs(monkeypatch):
    running = queue_status([("a", "Running")], 1, 0)
    calls = fake_queue(monkeypatch, [running] * 20 + [queue_status([("a", "Success")], 0, 0)])
    expqueue.run_queue(["a"], 1, poll_s=0, patience=1, restarts=1)
    assert calls.count(("queue", "start", "-j", "1")) == 1


def test_git_ignored_inputs_travel_with_each_queued_experiment(tmp_path, monkeypatch):
    # a queued experiment runs in a copy of the git tree: without --copy-paths the offline
    # NLU sources (data/external/) and a user's own data (data/own/) are not there
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("/data/external\n/data/own\n")
    for f in ("data/external/snli/a.jsonl", "data/own/t.csv", "configs/x.yaml"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x\n")
    (tmp_path / "params.yaml").write_text("setting: vision\n")
    calls = fake_queue(monkeypatch, [""])
    monkeypatch.setattr(expqueue.safety, "check", lambda: None)
    nlu = {"setting": "nlu", "tasks": {"t": {"path": "data/own/t.csv"},
                                       "u": {"path": "configs/x.yaml"}, "v": {"path": "gone"}}}
    expqueue.queue_all(nlu, {"e1": ["seeds=[0]"], "e2": ["seeds=[1]"]},
                       tmp_path / "params.yaml")
    runs = [c for c in calls if c[:2] == ("exp", "run")]
    assert len(runs) == 2
    for c in runs:  # tracked (configs/) and missing paths stay out
        pairs = {(a, b) for a, b in zip(c, c[1:]) if a == "-C"}
        assert pairs == {("-C", "data/external"), ("-C", "data/own/t.csv")}
    assert (tmp_path / "params.yaml").read_text() == "setting: vision\n"
    calls.clear()
    expqueue.queue_all({"setting": "vision", "data": {"source": "mnist"}}, {"e": []},
                       tmp_path / "params.yaml")
    assert [c for c in calls if "-C" in c] == []


def test_results_are_replaced_whole_and_a_kill_between_renames_is_recovered(tmp_path):
    out = tmp_path / "results" / "s"
    studyrun.write_results(out, {"a.json": {"v": 1}, "b.md": "old\n"})
    studyrun.write_results(out, {"a.json": {"v": 2}})
    assert sorted(p.name for p in out.iterdir()) == ["a.json"]  # b.md of the old run gone
    os.replace(out, out.parent / ".s.old")  # killed after the first rename
    (out.parent / ".s.partial").mkdir()
    studyrun.recover(out)
    assert json.loads((out / "a.json").read_text()) == {"v": 2}
    assert sorted(p.name for p in out.parent.iterdir()) == ["s"]


# --- compare --------------------------------------------------------------------------------

def results(folder: Path, per_seed: dict, lr: float = 0.001) -> Path:
    folder.mkdir(parents=True)
    methods = {m: {"per_seed_test": {str(s): v for s, v in vals.items()}}
               for m, vals in per_seed.items()}
    (folder / "summary.json").write_text(json.dumps({"metric": "acc", "methods": methods}))
    raw = tiny_raw(seeds=sorted(next(iter(per_seed.values()))))
    raw["train"]["lr"] = lr
    (folder / "params.yaml").write_text(yaml.safe_dump(raw))
    return folder


A = {"alphavil": {0: 0.80, 1: 0.82, 2: 0.79, 3: 0.85, 7: 0.10},
     "uniform": {0: 0.70, 1: 0.75, 2: 0.74, 3: 0.71, 7: 0.20}}
B = {"alphavil": {0: 0.78, 1: 0.80, 2: 0.80, 3: 0.81, 9: 0.99},
     "uniform": {0: 0.71, 1: 0.70, 2: 0.73, 3: 0.69, 9: 0.00}, "diw": {0: 0.5, 1: 0.5}}


def test_compare_pairs_common_seeds_against_scipy(tmp_path, capsys):
    a, b = results(tmp_path / "A", A), results(tmp_path / "B", B, lr=0.003)
    assert compare.main([str(a), str(b), "--json", str(tmp_path / "c.json")]) == 0
    got = json.loads((tmp_path / "c.json").read_text())
    seeds = [0, 1, 2, 3]  # 7 only in A, 9 only in B
    assert got["seeds"] == seeds and list(got["methods"]) == ["alphavil", "uniform"]
    ps = {}
    for m in ("alphavil", "uniform"):
        x, y = [A[m][s] for s in seeds], [B[m][s] for s in seeds]
        d = [u - v for u, v in zip(x, y)]
        t = stats.ttest_rel(x, y)
        ci = t.confidence_interval(0.95)
        c = got["methods"][m]
        assert c["mean_diff"] == pytest.approx(sum(d) / 4)
        assert c["p_value"] == pytest.approx(t.pvalue)
        assert (c["ci95_low"], c["ci95_high"]) == pytest.approx((ci.low, ci.high))
        assert c["wins"] == sum(v > 0 for v in d) and c["n"] == 4
        ps[m] = t.pvalue
    lo, hi = sorted(ps.values())
    holm = {m: min(1, 2 * p) if p == lo else max(min(1, 2 * lo), p) for m, p in ps.items()}
    assert {m: got["methods"][m]["p_holm"] for m in ps} == pytest.approx(holm)
    assert got["differ"] == ["train.lr"]
    out = capsys.readouterr().out
    assert "paired over seeds [0, 1, 2, 3]" in out and "params that differ: train.lr" in out


def test_compare_one_method_and_bad_input(tmp_path, capsys):
    a, b = results(tmp_path / "A", A), results(tmp_path / "B", B)
    assert compare.main([str(a), str(b), "--method", "uniform", "--json",
                         str(tmp_path / "c.json")]) == 0
    got = json.loads((tmp_path / "c.json").read_text())
    # one comparison: Holm leaves its p alone
    assert list(got["methods"]) == ["uniform"]
    assert got["methods"]["uniform"]["p_holm"] == got["methods"]["uniform"]["p_value"]
    assert compare.main([str(a), str(b), "--method", "diw"]) == 2
    assert "--method 'diw': expected a method of both studies" in capsys.readouterr().err
    assert compare.main([str(a), str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_compare_on_dev_reads_the_last_epochs_dev_metric_and_never_test(tmp_path):
    """--split dev pairs each seed's dev metric after its last epoch (the split a choice is
    made on); the test values, however wild, do not enter it."""
    a, b = results(tmp_path / "A", A), results(tmp_path / "B", B)

    def records(folder, dev):  # epochs base, ep0, ep1: only ep1 (n 2) may count
        rows = [{"method": "alphavil", "seed": s, "epoch": ep, "n": n,
                 "dev": {"acc": v if n == 2 else 0.0}, "test": {"acc": 1e9}}
                for s, v in dev.items() for n, ep in enumerate(["base", "ep0", "ep1"])]
        (folder / "per_epoch.json").write_text(json.dumps({"records": rows}))
    records(a, {0: 0.50, 1: 0.60, 2: 0.70})
    records(b, {0: 0.40, 1: 0.60, 2: 0.65, 5: 0.9})
    assert compare.main([str(a), str(b), "--split", "dev", "--method", "alphavil", "--json",
                         str(tmp_path / "c.json")]) == 0
    got = json.loads((tmp_path / "c.json").read_text())
    assert got["split"] == "dev" and got["seeds"] == [0, 1, 2]
    assert got["methods"]["alphavil"]["mean_diff"] == pytest.approx((0.10 + 0 + 0.05) / 3)
    assert got["methods"]["alphavil"]["wins"] == 2


# --- through the real DVC queue (tiny: 2 seeds, 1 epoch, 1 baseline) -----------------------

def tiny_study_repo(tmp_path: Path, seeds: tuple = (0, 1)) -> DvcRepo:
    raw = tiny_raw(baselines=["single_task"])
    raw["epochs"] = raw["epochs"][:1]
    (tmp_path / "repo").mkdir()
    repo = DvcRepo(tmp_path / "repo", raw)
    write_study(repo.path, "tiny", seeds=list(seeds), data_seed=0, baselines=["single_task"])
    repo.commit("study")
    return repo


def study_cmd(repo: DvcRepo, *args: str) -> list[str]:
    return [sys.executable, "-m", "alphavil.workflow.study", "run", "studies/tiny.yaml", *args]


def start(repo: DvcRepo, *args: str) -> subprocess.Popen:
    return subprocess.Popen(study_cmd(repo, *args), cwd=repo.path, env=repo.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stop_queue(repo: DvcRepo) -> None:
    repo.dvc("queue", "stop", "--kill", check=False)


@pytest.mark.integration
def test_a_study_through_the_queue_pools_what_one_run_of_all_seeds_gives(tmp_path):
    repo = tiny_study_repo(tmp_path)
    before = repo.read("params.yaml")
    try:
        repo.run(*study_cmd(repo, "-j", "2"))
        out = repo.path / "results" / "tiny"
        assert sorted(p.name for p in out.iterdir()) == sorted(studyrun.FILES)
        assert repo.read("params.yaml") == before  # the queue's params were put back
        summary = json.loads((out / "summary.json").read_text())
        raw = yaml.safe_load((out / "params.yaml").read_text())
        assert raw["seeds"] == [0, 1]
        # the same stage functions over both seeds in one process: the same summary
        assert run_stages(raw, tmp_path / "inproc") == summary
        records = json.loads((out / "per_epoch.json").read_text())["records"]
        assert sorted({(r["seed"], r["method"]) for r in records}) == [
            (s, m) for s in (0, 1) for m in ("alphavil", "single_task")]
        run = json.loads((out / "run.json").read_text())
        head = repo.run("git", "rev-parse", "HEAD").stdout.strip()
        assert run["code"] == {"commit": head, "dirty": False, "dirty_paths": []} and run["machine"]["cores"]
        assert sorted(run["experiments"]) == ["0", "1"]
        # run again: both experiments are reused, nothing is queued
        again = repo.run(*study_cmd(repo))
        assert "Queued experiment" not in again.stdout + again.stderr
        assert json.loads((out / "summary.json").read_text()) == summary
    finally:
        stop_queue(repo)


def _stage_process(repo: DvcRepo, name: str, timeout: float = 90):
    """The process of a `name` stage running inside `repo` (its queue runs experiments in
    repo/.dvc/tmp/exps/): never another repository's. The repo's stages must run cold
    (ALPHAVIL_NO_WARM=1): in the warm worker a tiny stage lives for a fraction of a second,
    too short to catch from outside (tests/test_warm.py kills delegated stages)."""
    import psutil

    assert repo.env.get("ALPHAVIL_NO_WARM") == "1"
    end = time.time() + timeout
    while time.time() < end:
        for p in psutil.process_iter(["cmdline", "cwd"]):
            cmd, cwd = p.info["cmdline"] or [], p.info["cwd"] or ""
            if cwd.startswith(str(repo.path)) and cmd[1:2] == [f"stages/{name}.py"]:
                return p, cmd
        time.sleep(0.2)
    raise AssertionError(f"no {name} stage started within {timeout} s")


@pytest.mark.integration
def test_a_killed_worker_fails_the_study_without_results_and_a_rerun_resumes(tmp_path):
    repo = tiny_study_repo(tmp_path, seeds=(0,))
    repo.env["ALPHAVIL_NO_WARM"] = "1"
    try:
        proc = start(repo, "-j", "1")
        victim, cmd = _stage_process(repo, "estimate_alpha")  # prepare, train_base, finetunes done
        seed = cmd[cmd.index("--seed") + 1]
        victim.kill()
        _, err = proc.communicate(timeout=110)
        assert proc.returncode == 2 and f"'tiny-s{seed}' failed" in err
        assert not (repo.path / "results" / "tiny").exists()
        del repo.env["ALPHAVIL_NO_WARM"]  # the rerun may be quick
        repo.run(*study_cmd(repo, "-j", "2"))
        log = repo.dvc("queue", "logs", f"tiny-s{seed}").stdout
        # what had finished before the kill came from the run-cache, not from a re-run
        assert f"Stage 'train_base@{seed}' is cached - skipping run" in log
        assert (repo.path / "results" / "tiny" / "summary.json").is_file()
    finally:
        stop_queue(repo)


@pytest.mark.integration
def test_a_second_study_is_refused_and_a_killed_command_is_resumed(tmp_path):
    repo = tiny_study_repo(tmp_path, seeds=(0,))
    repo.env["ALPHAVIL_NO_WARM"] = "1"
    lock = repo.path / studyrun.LOCK
    try:
        first = start(repo)
        deadline = time.time() + 120
        while not lock.exists():
            assert first.poll() is None, first.communicate()
            assert time.time() < deadline, "the study took no lock within 120 s"
            time.sleep(0.1)
        second = repo.run(*study_cmd(repo), check=False)
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"error: another study is running in this repository (pid {first.pid}: "
            "study run studies/tiny.yaml); wait for it to finish"]
        _stage_process(repo, "train_base")
        first.kill()  # the whole command; its queue workers run on
        first.communicate(timeout=60)
        assert not (repo.path / "results" / "tiny").exists()
        del repo.env["ALPHAVIL_NO_WARM"]  # the rerun may be quick
        repo.run(*study_cmd(repo))  # the dead holder's lock is taken over
        summary = json.loads(repo.read("results/tiny/summary.json"))
        assert summary["seeds"] == 1 and sorted(summary["methods"]) == ["alphavil", "single_task"]
        assert not lock.exists()
    finally:
        stop_queue(repo)
