"""A params value must never become a shell command or a path outside the repository
(alphavil/safety.py, docs/pipeline.md "Safety"). DVC renders `${...}` values into stage
commands unquoted and removes a stage's outputs before running it; each attack below ran
`touch` or deleted a folder outside the repository before this check existed."""

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alphavil.workflow import safety
from alphavil.config import ParamsError
from testkit.params import ROOT, tiny_raw
from testkit.dvcrepo import DvcRepo


def attacks(marker: Path) -> dict[str, tuple[str, object, str]]:
    """name -> (params key, its hostile value, the key the error must name)."""
    shell = f"1;touch {marker};echo"
    base = tiny_raw(baselines=["single_task"])
    epochs = copy.deepcopy(base["epochs"])
    epochs[0]["overrides"] = {f"x;touch {marker};echo": 1}
    traversal = copy.deepcopy(base["epochs"])
    traversal[1].update(id="../../../victim")
    return {
        "seed": ("seeds", [0, shell], "seeds"),
        "baseline": ("baselines", ["single_task", shell], "baselines"),
        "override_key": ("epochs", epochs, "epochs[0].overrides"),
        "baseline_path": ("baselines", ["../../victim"], "baselines"),
        "epoch_id_path": ("epochs", traversal, "epochs[1].id"),
    }


def _project(folder: Path, raw: dict) -> Path:
    shutil.copy2(ROOT / "dvc.yaml", folder / "dvc.yaml")
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    from dvc.repo import Repo

    Repo.init(str(folder), no_scm=True).close()
    return folder


def test_plain_commands_and_paths_pass_and_shell_syntax_or_escapes_do_not():
    assert safety.cmd_problem("python stages/finetune.py --seed 0 --epoch ep1 --task left "
                              "--sample_ratio 0.5 --lr 1e-05") is None
    for cmd in ("a;b", "a && b", "a | b", "$(b)", "`b`", "a\nb", "'a'", "a > b", "a # b"):
        assert safety.cmd_problem(f"python x.py --seed {cmd}"), cmd
    for path in ("checkpoints/s0/base", "deltas/s0/ep1/left.safetensors", "params.yaml"):
        assert safety.path_problem(path) is None, path
    for path in ("baselines/../../victim/s0", "/etc/passwd", "a//b", "./a", "a/./b",
                 "s1;touch x/base", "a b", "..", "a\\..\\b"):
        assert safety.path_problem(path), path


@pytest.mark.parametrize("name", sorted(attacks(Path("/m"))))
def test_check_names_the_key_of_each_attack(tmp_path, name):
    key, value, named = attacks(tmp_path / "m")[name]
    raw = tiny_raw(baselines=["single_task"])
    raw[key] = value
    _project(tmp_path, raw)
    with pytest.raises(ParamsError, match=named.replace("[", r"\[")):
        safety.check(tmp_path)


def test_what_dvc_renders_is_checked_even_if_params_validation_missed_it(tmp_path,
                                                                         monkeypatch):
    """The second line of defence: what DVC itself renders, whatever validate() accepts."""
    monkeypatch.setattr(safety, "load_params", lambda path: None)
    folder = _project(tmp_path, tiny_raw())
    safety.check(folder)  # the default templates with valid params render plain
    for name, (key, value, _) in attacks(tmp_path / "m").items():
        raw = tiny_raw(baselines=["single_task"])
        raw[key] = value
        (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        with pytest.raises(ParamsError, match="unsafe to run") as err:
            safety.check(folder)
        assert "stage '" in str(err.value), name


def test_study_restores_params_yaml_when_the_check_refuses(tmp_path, monkeypatch):
    """Should the study's own validation ever let a value through, the check before
    `dvc exp run` refuses it and leaves params.yaml as it was."""
    from alphavil.workflow import study

    class LetThrough:  # a validation that accepts the params as they are
        def __init__(self, raw, source="params.yaml"):
            self.raw = raw

        def dump(self):
            return self.raw

    monkeypatch.setattr(study, "validate", LetThrough)
    monkeypatch.setattr(study, "check_data_source", lambda params: None)
    folder = _project(tmp_path, tiny_raw())
    before = (folder / "params.yaml").read_text()
    (folder / "attack.yaml").write_text(yaml.safe_dump({"seeds": [0, "1;touch x;echo"]}))
    monkeypatch.chdir(folder)
    assert study.main(["attack.yaml"]) == 2
    assert (folder / "params.yaml").read_text() == before
    assert not (folder / "x").exists()


# --- the attacks, for real, through every way the project starts DVC -----------------

@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """The whole pipeline done once, so the attacked stage is the first one DVC would run
    (a stage still to run would refuse the params first and hide the attack)."""
    top = tmp_path_factory.mktemp("safety")
    (top / "repo").mkdir()
    r = DvcRepo(top / "repo", tiny_raw(baselines=["single_task"]))
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy2(ROOT / name, r.path / name)
    # `make run VENV=venv` with this interpreter: the recipe runs as written, nothing installed
    bindir = r.path / "venv" / "bin"
    bindir.mkdir(parents=True)
    for tool, line in (("python", f'exec {sys.executable} "$@"'),
                       ("dvc", f'exec {sys.executable} -m dvc "$@"')):
        (bindir / tool).write_text(f"#!/bin/sh\n{line}\n")
        (bindir / tool).chmod(0o755)
    (r.path / "venv" / ".installed").touch()
    (r.path / ".git" / "info" / "exclude").write_text("/venv\n")
    assert "evaluate" in r.repro(warm=True)
    r.commit("first run")
    r.top = top
    return r


ENTRY_POINTS = ["make_run", "study", "dvc_repro", "dvc_exp_run_S"]


def _attack(repo: DvcRepo, entry: str, key: str, value) -> subprocess.CompletedProcess:
    if entry == "study":
        (repo.path / "attack.yaml").write_text(yaml.safe_dump({key: value}))
        return repo.run(sys.executable, "-m", "alphavil.workflow.study", "attack.yaml", check=False)
    if entry == "dvc_exp_run_S":
        return repo.dvc("exp", "run", "-S", f"{key}={_hydra(value)}", check=False)
    raw = repo.params()
    raw[key] = value
    repo.write_params(raw)
    if entry == "make_run":
        return repo.run("make", "run", "VENV=venv", check=False)
    return repo.dvc("repro", check=False)


def _hydra(value) -> str:
    """A value in the override grammar of `dvc exp run -S` (strings single-quoted)."""
    if isinstance(value, list):
        return "[" + ",".join(_hydra(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_hydra(k)}:{_hydra(v)}" for k, v in value.items()) + "}"
    return f"'{value}'" if isinstance(value, str) else str(value)


@pytest.mark.integration
@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("name", ["seed", "baseline", "override_key", "baseline_path"])
def test_attack_creates_no_file_and_deletes_nothing(repo, entry, name):
    marker = repo.top / "pwned"
    victim = repo.top / "victim" / "s0"  # what baselines/../../victim/s0 points at
    victim.mkdir(parents=True, exist_ok=True)
    (victim / "keep.txt").write_text("keep")
    key, value, named = attacks(marker)[name]
    if entry == "dvc_exp_run_S" and name == "override_key":
        pytest.skip("-S cannot spell a key with ';' and spaces (Hydra's grammar)")
    try:
        proc = _attack(repo, entry, key, value)
        out = proc.stdout + proc.stderr
        assert not marker.exists(), f"{name} through {entry} ran a command:\n{out[-2000:]}"
        assert (victim / "keep.txt").is_file(), f"{name} through {entry} deleted {victim}"
        assert proc.returncode != 0, out[-2000:]
        assert named in out, out[-2000:]  # stopped by the check, naming the key
        # the check refused before DVC ran or cleared any other stage
        assert re.findall(r"Running stage '([^']+)'", out) in ([], ["check_params"]), out
    finally:
        marker.unlink(missing_ok=True)
        repo.run("git", "checkout", "-q", "params.yaml")
        (repo.path / "attack.yaml").unlink(missing_ok=True)
    if entry == "study":  # refused before writing anything
        assert repo.run("git", "status", "--porcelain").stdout.strip() == ""
