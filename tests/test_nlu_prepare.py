"""NLU prepare: disjoint splits, stable dev/test, byte-identical output, params checks,
and tokenised data as a DVC output that only data/tokenizer changes re-create."""

import copy
import json

import pytest
import yaml

from alphavil.store.artifacts import file_digest, load_tensors
from alphavil.config import ParamsError, validate
from alphavil.data.prepared import _load_split_file, load_task_split
from alphavil.data.text_prepare import select_examples
from alphavil.data.text_sources import SourceError
from needs import needs_module
from testkit.nlu import make_tiny_encoder, nlu_raw

needs_module("transformers")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return make_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny-bert")


def _pairs(pool):
    return set(zip(pool.text_a, pool.text_b or [None] * len(pool)))


def test_tasks_of_one_source_get_disjoint_rows(tmp_path, encoder):
    params = validate(nlu_raw(tmp_path, encoder))
    ex, info, _ = select_examples(params)
    seen = set()
    for task in ("entail", "nli"):
        for split in ("train", "dev"):
            rows = _pairs(ex[task][split])
            assert not rows & seen, (task, split)
            seen |= rows
    assert info["entail"]["drawn_from"]["test"] == "test"  # SNLI's own test split
    assert not _pairs(ex["entail"]["test"]) & _pairs(ex["nli"]["test"])


def test_growing_n_train_keeps_dev_and_test(tmp_path, encoder):
    small, _, _ = select_examples(validate(nlu_raw(tmp_path, encoder)))
    raw = nlu_raw(tmp_path, encoder)
    raw["tasks"]["sentiment"]["n_train"] = 40
    big, _, _ = select_examples(validate(raw))
    for split in ("dev", "test"):
        assert big["sentiment"][split].text_a == small["sentiment"][split].text_a
    assert big["sentiment"]["train"].text_a[:32] == small["sentiment"]["train"].text_a


def test_asking_for_more_rows_than_exist_names_the_key(tmp_path, encoder):
    raw = nlu_raw(tmp_path, encoder)
    raw["tasks"]["sentiment"]["n_train"] = 500
    with pytest.raises(SourceError, match=r"tasks\.sentiment\.n_train.*500"):
        select_examples(validate(raw))


def test_prepare_is_byte_identical_and_loads_per_task(tmp_path, encoder, monkeypatch):
    from alphavil import pipeline

    raw = nlu_raw(tmp_path, encoder)
    raw["tasks"]["entail"]["label_noise"] = 0.5
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    _load_split_file.cache_clear()
    pipeline.prepare("params.yaml")
    digests = {p.name: file_digest(p) for p in (tmp_path / "data/prepared").rglob("*")
               if p.is_file()}
    pipeline.prepare("params.yaml")
    assert digests == {p.name: file_digest(p) for p in (tmp_path / "data/prepared").rglob("*")
                       if p.is_file()}
    _load_split_file.cache_clear()
    split = load_task_split(tmp_path / "data/prepared", "train", "nli")
    assert set(split.inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    assert split.inputs["input_ids"].shape == (32, 16) and split.metrics == ("acc", "f1", "mcc")
    assert int(split.labels.max()) <= 2
    meta = json.loads((tmp_path / "data/prepared/meta.json").read_text())
    assert meta["tasks"]["entail"]["label_names"] == ["entailment", "not_entailment"]
    tensors, _ = load_tensors(tmp_path / "data/prepared/dev.safetensors")
    assert tensors["input_ids.sentiment"][:, 0].eq(2).all()  # [CLS] first
    _load_split_file.cache_clear()


NLU_BAD = [
    ("tasks.entail.source", "wikipedia", "tasks.entail.source"),
    ("tasks.entail.view", "5way", "tasks.entail.view"),
    ("tasks.entail.n_train", 0, "tasks.entail.n_train"),
    ("tasks.entail.colour", "red", "tasks.entail"),
    ("data.max_length", 4, "data.max_length"),
    ("data.max_length", 4096, "data.max_length"),
    ("model.kind", "cnn", "model.kind"),
    ("model.pooling", "max", "model.pooling"),
    ("model.train_layers", -1, "model.train_layers"),
    ("model.freeze_embeddings", "yes", "model.freeze_embeddings"),
    ("model.init", "zeros", "model.init"),
]


@pytest.mark.parametrize("key,value,named", NLU_BAD, ids=[f"{k}={v!r}" for k, v, _ in NLU_BAD])
def test_bad_nlu_value_is_rejected_naming_the_key(tmp_path, encoder, key, value, named):
    raw = nlu_raw(tmp_path, encoder)
    node = raw
    *parents, last = key.split(".")
    for k in parents:
        node = node[k]
    node[last] = value
    with pytest.raises(ParamsError) as err:
        validate(raw)
    assert named in str(err.value)


def test_glue_and_files_tasks_are_checked(tmp_path, encoder):
    raw = nlu_raw(tmp_path, encoder)
    raw["tasks"]["g"] = {"source": "glue", "name": "rtee"}
    raw["tasks"]["f"] = {"source": "files", "train": "x.csv", "text": "sentence", "label": "y"}
    with pytest.raises(ParamsError) as err:
        validate(raw)
    assert "tasks.g.name" in str(err.value) and "tasks.f.text" in str(err.value)
    raw["tasks"]["g"]["name"] = "stsb"
    raw["tasks"]["f"]["text"] = ["sentence"]
    p = validate(raw)
    assert p.tasks["g"].source == "glue" and p.tasks["g"].view_name == "stsb"


def test_shipped_nlu_config_is_valid():
    from testkit.params import ROOT, repo_params

    raw = copy.deepcopy(repo_params())
    raw.update(yaml.safe_load((ROOT / "configs/nlu.yaml").read_text()))  # overlay semantics
    p = validate(raw)
    assert p.target == "entail" and p.tasks["entail"].source == "snli"


@pytest.mark.integration
def test_tokenised_data_is_a_dvc_output_only_data_changes_recreate(tmp_path, encoder):
    from testkit.dvcrepo import DvcRepo

    (tmp_path / "src").mkdir()
    (tmp_path / "repo").mkdir()
    raw = nlu_raw(tmp_path / "src", encoder)
    repo = DvcRepo(tmp_path / "repo", raw)
    assert repo.repro("prepare") == ["prepare"]
    repo.commit("prepared")
    assert repo.repro("prepare") == []
    raw["train"]["lr"] = 0.01  # not a prepare parameter
    raw["alpha"]["steps"] = 5
    repo.write_params(raw)
    assert repo.repro("prepare") == []
    raw["data"]["max_length"] = 24
    repo.write_params(raw)
    assert repo.repro("prepare") == ["prepare"]
    t, _ = load_tensors(repo.path / "data/prepared/train.safetensors")
    assert t["input_ids.entail"].shape[1] == 24


def test_nlu_tasks_take_a_role_for_the_ranking_score(tmp_path, encoder):
    """An NLU suite can say which auxiliary tasks help or harm, as a vision suite does:
    the role reaches the ranking score's roles, and a misspelt one is refused by name."""
    from alphavil.report import aux_roles

    raw = nlu_raw(tmp_path, encoder)
    raw["tasks"]["nli"]["role"] = "helpful"
    raw["tasks"]["sentiment"]["role"] = "harmful"
    params = validate(raw)
    assert params.tasks["nli"].role == "helpful"
    assert params.tasks["entail"].role is None
    assert aux_roles(params) == {"nli": "helpful", "sentiment": "harmful"}
    raw["tasks"]["sentiment"]["role"] = "harmfull"
    with pytest.raises(ParamsError, match=r"tasks\.sentiment\.role: expected one of"):
        validate(raw)
