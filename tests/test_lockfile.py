"""alphavil.workflow.lockfile: dvc.lock entries of stages dvc.yaml no longer defines are dropped,
the rest of the lock is left byte for byte as DVC wrote it."""

import subprocess
import sys

import pytest

from alphavil.workflow import lockfile

ENTRY = """  {name}:
    cmd: echo {name} > {name}.txt
    outs:
    - path: {name}.txt
      hash: md5
      md5: 60b725f10c9c85c70d97880dfe8191b3
      size: 2
"""


@pytest.fixture
def root(tmp_path):
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q", "--no-scm"], cwd=tmp_path,
                   check=True)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  keep:\n    cmd: echo keep > keep.txt\n    outs: [keep.txt]\n")
    lock = "schema: '2.0'\nstages:\n" + "".join(
        ENTRY.format(name=n) for n in ("old@0", "keep", "old@1"))
    (tmp_path / "dvc.lock").write_text(lock)
    return tmp_path


def test_prune_drops_only_undefined_stages(root):
    assert lockfile.prune(root) == ["old@0", "old@1"]
    assert (root / "dvc.lock").read_text() == "schema: '2.0'\nstages:\n" + ENTRY.format(
        name="keep")
    assert lockfile.prune(root) == []
    assert not (root / "dvc.lock.tmp").exists()


def test_dry_run_reports_and_keeps_the_lock(root, capsys):
    before = (root / "dvc.lock").read_bytes()
    assert lockfile.main(["--root", str(root), "--dry-run"]) == 0
    assert "would drop 2 entries" in capsys.readouterr().out
    assert (root / "dvc.lock").read_bytes() == before


def test_unresolvable_dvc_yaml_is_an_error_and_the_lock_is_untouched(root, capsys):
    before = (root / "dvc.lock").read_bytes()
    (root / "dvc.yaml").write_text("stages:\n  keep:\n    cmd: 1\n    unknown_key: 2\n")
    assert lockfile.main(["--root", str(root)]) == 2
    assert "dvc.yaml" in capsys.readouterr().err
    assert (root / "dvc.lock").read_bytes() == before


def test_a_long_list_is_summarised_per_stage_unless_dry_run():
    names = [f"finetune@{s}-ep0-left" for s in range(12)] + ["merge@0-ep0", "merge@1-ep0"]
    assert lockfile.describe(names, 10) == "finetune ×12, merge ×2"
    assert lockfile.describe(names, None) == ", ".join(names)
    assert lockfile.describe(names[:3], 10) == ", ".join(names[:3])
