"""testkit.params.committed_params_text: the tests read the committed params.yaml, not what a study
(`make run-nlu`, `python -m alphavil.workflow.study`) left in the working tree."""

import subprocess

import pytest
import yaml

from alphavil.workflow.study import HEADER
from testkit.params import ROOT, STUDY_HEADER, committed_params_text, repo_params

DEFAULT = "seeds: [0]\ntarget: left\n"
STUDY = HEADER.format(config="configs/nlu.yaml") + "seeds: [7]\ntarget: nli\n"


def _git(root, *args):
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "HOME": str(root),
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
                        "PATH": "/usr/bin:/bin"})


def test_the_study_header_is_what_alphavil_study_writes():
    assert STUDY.startswith(STUDY_HEADER)


def test_a_git_checkout_gives_head_even_with_a_study_in_the_working_tree(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "params.yaml").write_text(DEFAULT)
    _git(tmp_path, "add", "params.yaml")
    _git(tmp_path, "commit", "-qm", "defaults")
    (tmp_path / "params.yaml").write_text(STUDY)  # what `make run-nlu` does
    assert committed_params_text(tmp_path) == DEFAULT


def test_outside_git_the_working_tree_file_is_read_unless_a_study_wrote_it(tmp_path):
    plain, study = tmp_path / "plain", tmp_path / "study"
    for folder, text in ((plain, DEFAULT), (study, STUDY)):
        folder.mkdir()
        (folder / "params.yaml").write_text(text)
    assert committed_params_text(plain) == DEFAULT
    with pytest.raises(RuntimeError, match="study's overlay.*git checkout params.yaml"):
        committed_params_text(study)


def test_the_repository_helper_reads_the_committed_defaults():
    text = committed_params_text()
    assert not text.startswith(STUDY_HEADER)  # a study's output was never committed as default
    assert yaml.safe_load(text) == repo_params()
    assert repo_params()["setting"] == "vision"
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True)
    if head.returncode == 0:  # in a checkout it is HEAD's file, whatever the working tree holds
        shown = subprocess.run(["git", "-C", str(ROOT), "show", "HEAD:./params.yaml"],
                               capture_output=True, text=True, check=True).stdout
        assert text == shown
