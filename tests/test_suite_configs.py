"""The shipped ground-truth suites (configs/suite-*.yaml): each defines the ranking score
(a helpful and a harmful auxiliary task), its studies run it, and each prepares and trains
end to end at a tiny size (in process, no DVC)."""

import copy
import os
from pathlib import Path

import pytest
import yaml

from alphavil.config import validate
from alphavil.report import aux_roles
from alphavil.workflow import studyfile
from testkit.params import ROOT

SUITES = sorted((ROOT / "configs").glob("suite-*.yaml"))


def _suite(name: str) -> dict:
    return studyfile.merged_params(ROOT / "configs" / name, ROOT / "params.yaml")


def test_the_new_suites_are_shipped():
    assert {"suite-lowres.yaml", "suite-right.yaml", "suite-nlu.yaml"} <= {p.name for p in SUITES}


@pytest.mark.parametrize("config", SUITES, ids=lambda p: p.name)
def test_each_suite_has_helpful_and_harmful_auxiliary_tasks(config):
    """Without both roles aux_roles is {} and summary.json has no ranking score at all."""
    params = validate(_suite(config.name))
    roles = aux_roles(params)
    assert {"helpful", "harmful"} <= set(roles.values()), config.name
    assert params.target not in roles and params.tasks[params.target].role is None
    # the target trains on fewer examples than the helpful task that shares its labels
    own = params.tasks[params.target]
    assert own.n_train is not None and own.n_train < params.data.n_train


@pytest.mark.parametrize("study, overlay, seeds, data_seed", [
    ("suite-right", "suite-right", list(range(5)), 0),
    ("suite-right-heldout", "suite-right", list(range(5, 15)), 1),
    ("suite-nlu", "suite-nlu", list(range(5)), 0),
    ("suite-nlu-heldout", "suite-nlu", list(range(5, 10)), 1),
])
def test_suite_studies_run_their_overlay_on_their_seeds(study, overlay, seeds, data_seed):
    spec = yaml.safe_load((ROOT / "studies" / f"{study}.yaml").read_text())
    assert spec["overlays"] == [f"configs/{overlay}.yaml"]
    os.chdir(ROOT)
    name, params = studyfile.study_params(Path("studies") / f"{study}.yaml")  # it validates
    assert name == study and params.seeds == seeds and params.data.seed == data_seed
    assert params.baselines == ["single_task", "uniform", "diw", "forkmerge", "gcs"]


@pytest.mark.parametrize("suite", ["suite-right", "suite-nlu"])
def test_a_heldout_suite_study_is_its_suite_on_fresh_seeds_and_data(suite):
    os.chdir(ROOT)
    _, main = studyfile.study_params(Path(f"studies/{suite}.yaml"))
    _, held = studyfile.study_params(Path(f"studies/{suite}-heldout.yaml"))
    assert not set(main.seeds) & set(held.seeds) and main.data.seed != held.data.seed
    strip = lambda p: {**p.dump(), "seeds": None, "data": {**p.dump()["data"], "seed": None}}
    assert strip(main) == strip(held)


def test_suite_right_targets_the_right_digit():
    params = validate(_suite("suite-right.yaml"))
    assert params.target == "right"
    labels = {t: (s.label, s.label_noise, s.inputs) for t, s in params.tasks.items()}
    assert labels["right_more"] == ("right", 0.0, "shared")
    assert labels["noise"] == ("right", 1.0, "shared")
    assert labels["scrambled"] == ("right", 0.0, "permuted")
    assert params.tasks["right_parity"].label == "right_parity"


def _check_summary(summary: dict, params) -> None:
    alphavil = summary["methods"]["alphavil"]
    assert summary["target"] == params.target
    assert set(alphavil["final_weight"]) == set(params.tasks)
    # the ranking score exists only when the roles reached the report
    assert 0.0 <= alphavil["ranking_weights"] <= 1.0
    for by in ("weights", "alpha"):
        assert set(alphavil[f"ranking_{by}_per_seed"]) == {str(s) for s in params.seeds}
    # by α: None where every (helpful, harmful) pair lost its α (a task at weight 0 has none)
    assert alphavil["ranking_alpha"] is None or 0.0 <= alphavil["ranking_alpha"] <= 1.0
    assert set(summary["methods"]) == {"alphavil", *params.baselines}


def test_suite_right_prepares_and_trains_end_to_end(tmp_path):
    from testkit.inprocess import run_stages

    raw = copy.deepcopy(_suite("suite-right.yaml"))
    raw["seeds"] = [0]
    raw["data"].update(n_train=96, n_dev=48, n_test=48)
    raw["tasks"]["right"]["n_train"] = 40
    raw["model"].update(channels=[4, 8], hidden=16)
    raw["alpha"].update(steps=3, batch_size=32)
    raw["baselines"] = ["single_task", "uniform"]
    raw["epochs"] = raw["epochs"][:2]
    summary = run_stages(raw, tmp_path / "run")
    _check_summary(summary, validate(raw))


def _nlu_suite_tiny(tmp_path):
    from testkit.nlu import make_tiny_encoder, write_bbc, write_snli

    encoder = make_tiny_encoder(tmp_path / "enc")
    snli = write_snli(tmp_path / "snli", n_train=400, n_test=120)
    bbc = write_bbc(tmp_path / "bbc", per_class=10)
    raw = copy.deepcopy(_suite("suite-nlu.yaml"))
    sizes = {"entail": 8, "entail_more": 32, "nli": 24, "noise": 24, "topic": 20}
    for name, task in raw["tasks"].items():
        task["path"] = str(bbc if task["source"] == "bbc_news" else snli)
        task["n_train"] = sizes[name]
        task.pop("n_dev", None)
        task.pop("n_test", None)
    raw["seeds"] = [0]
    raw["baselines"] = ["single_task", "uniform", "diw", "forkmerge", "gcs"]  # the studies'
    raw["data"].update(tokenizer=str(encoder), max_length=16, n_dev=8, n_test=8)
    raw["model"].update(encoder=str(encoder), init="random", train_layers=None)
    raw["alpha"].update(steps=2, batch_size=8)
    raw["train"]["batch_size"] = 8
    return raw


def test_nlu_suite_auxiliary_snli_tasks_never_see_the_target_rows(tmp_path):
    """A role is no loader option: the helpful, harmful and target SNLI tasks split one
    pool, so none trains on a pair the target is tuned or scored on."""
    from alphavil.data.text_prepare import select_examples

    ex, _, _ = select_examples(validate(_nlu_suite_tiny(tmp_path)))
    target = {p for s in ("dev", "test", "train") for p in zip(ex["entail"][s].text_a,
                                                               ex["entail"][s].text_b)}
    for aux in ("entail_more", "nli", "noise"):
        rows = {p for p in zip(ex[aux]["train"].text_a, ex[aux]["train"].text_b)}
        assert len(rows) == len(ex[aux]["train"]) and not rows & target, aux


def test_nlu_suite_prepares_and_trains_end_to_end(tmp_path):
    from testkit.inprocess import run_stages

    raw = _nlu_suite_tiny(tmp_path)
    summary = run_stages(raw, tmp_path / "run")
    _check_summary(summary, validate(raw))
