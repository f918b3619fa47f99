"""The `hf` text source: any Hugging Face dataset by name (+ config, revision, data_files),
its split names and text/label columns, read here from local files only (a folder written
by save_to_disk, the csv and parquet builders); nothing reaches a hub."""

import datasets
import pandas as pd
import pytest

from alphavil.config import validate
from alphavil.config.nlu import NLU_TASK
from alphavil.data import text_sources
from alphavil.data.text_prepare import select_examples
from alphavil.data.text_sources import SourceError, load_hf, task_view
from testkit.nlu import nlu_raw

WORDS = "the a cat dog sat ran on under mat log".split()


def _rows(n, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return [{"sentence": " ".join(rng.choice(WORDS, 5)), "other": "x", "stars": i % 3}
            for i in range(n)]


def task(**spec):
    return NLU_TASK.validate_python({"source": "hf", "text": ["sentence"], **spec})


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "saved"
    feats = datasets.Features({"sentence": datasets.Value("string"),
                               "other": datasets.Value("string"),
                               "stars": datasets.ClassLabel(names=["bad", "ok", "good"])})
    datasets.DatasetDict({s: datasets.Dataset.from_list(_rows(n, i), features=feats)
                          for i, (s, n) in enumerate({"train": 60, "validation": 9,
                                                      "test": 12}.items())}).save_to_disk(folder)
    return folder


@pytest.fixture(scope="module")
def csvs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("csv")
    for split, n in (("train", 50), ("test", 10)):
        pd.DataFrame(_rows(n)).to_csv(folder / f"{split}.csv", index=False)
    return folder


def test_saved_dataset_with_named_splits_and_classlabel(saved):
    spec = task(name=str(saved), label="stars", splits={"dev": "validation", "test": "test"})
    pools = load_hf(spec, "tasks.t")
    assert {s: len(p) for s, p in pools.items()} == {"train": 60, "dev": 9, "test": 12}
    assert set(pools["train"].raw) == {0, 1, 2}  # ClassLabel ids as they are
    assert task_view(spec, pools, "tasks.t").num_classes == 3
    only_train = load_hf(task(name=str(saved), label="stars"), "tasks.t")
    assert list(only_train) == ["train"]  # dev and test carved by prepare


def test_csv_builder_with_data_files_and_two_text_columns(csvs):
    files = {"train": str(csvs / "train.csv"), "test": str(csvs / "test.csv")}
    spec = task(name="csv", data_files=files, label="stars", text=["sentence", "other"],
                splits={"test": "test"})
    pools = load_hf(spec, "tasks.t")
    assert len(pools["train"]) == 50 and len(pools["test"]) == 10
    assert pools["train"].text_b[0] == "x"
    # data_files chooses the files: the test file alone as the train split
    one = load_hf(task(name="csv", data_files=str(csvs / "test.csv"), label="stars"), "tasks.t")
    assert len(one["train"]) == 10


def test_name_config_and_revision_reach_load_dataset(monkeypatch, csvs):
    seen = {}

    def spy(name, config=None, **kw):
        seen.update(name=name, config=config, **kw)
        return datasets.DatasetDict({"train": datasets.Dataset.from_list(_rows(4))})

    monkeypatch.setattr(datasets, "load_dataset", spy)
    load_hf(task(name="someone/reviews", config="en", revision="abc123", label="stars"), "k")
    assert seen == {"name": "someone/reviews", "config": "en", "revision": "abc123",
                    "data_files": None}


def test_bad_hf_input_names_the_key(saved, tmp_path):
    with pytest.raises(SourceError, match=r"^tasks.t.splits.test: .* has no split 'tset'"):
        load_hf(task(name=str(saved), label="stars", splits={"test": "tset"}), "tasks.t")
    with pytest.raises(SourceError, match=r"no column \['label'\]"):
        load_hf(task(name=str(saved)), "tasks.t")
    with pytest.raises(SourceError, match=r"^tasks.t.name: load_dataset\("):
        load_hf(task(name="csv", data_files=str(tmp_path / "absent.csv")), "tasks.t")


def test_prepare_reads_own_test_split_whole_and_carves_dev(saved, tmp_path):
    raw = nlu_raw(tmp_path, tmp_path / "enc")  # select_examples needs no tokenizer
    raw["target"] = "s"
    spec = {"source": "hf", "name": str(saved), "text": ["sentence"], "label": "stars",
            "splits": {"test": "test"}}
    raw["tasks"] = {"s": spec}
    out, info, views = select_examples(validate(raw))
    # as for `files`: the dataset's own splits whole unless n_* is set (train: what dev left)
    assert {s: len(p) for s, p in out["s"].items()} == {"dev": 16, "test": 12, "train": 44}
    assert info["s"]["drawn_from"] == {"train": "train", "dev": "train", "test": "test"}
    assert info["s"]["view"] == "hf"
    raw["tasks"] = {"s": {**spec, "splits": {"test": "test", "dev": "validation"}, "n_test": 5,
                          "n_train": 20}}
    out, info, _ = select_examples(validate(raw))
    assert {s: len(p) for s, p in out["s"].items()} == {"dev": 9, "test": 5, "train": 20}
    assert info["s"]["drawn_from"]["dev"] == "dev"


def test_hf_is_a_registered_text_source():
    assert text_sources.LOADERS["hf"] is load_hf
    with pytest.raises(Exception, match="train"):
        NLU_TASK.validate_python({"source": "hf", "name": "x", "text": ["t"], "train": "f.csv"})
