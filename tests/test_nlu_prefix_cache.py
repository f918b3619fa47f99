"""evaluate's cache of a partly frozen encoder's lower layers: same bytes as without it,
the frozen layers really skipped on a repeated batch, and never stale."""

import json

import torch
import yaml

from alphavil import pipeline
from alphavil.config.nlu import NLUModel
from alphavil.config.vision import VisionModel
from alphavil.data.prepared import _load_split_file
from alphavil.models import prefix_cache
from alphavil.models.prefix_cache import cached_frozen_prefix
from needs import needs_module
from testkit.nlu import make_tiny_encoder, nlu_raw, run_training_stages

needs_module("transformers")


def _model(tmp_path, train_layers):
    from alphavil.models.transformer import build_transformer_model

    encoder = make_tiny_encoder(tmp_path / "encoder")
    meta = {"setting": "nlu", "tokenizer": {"name": str(encoder), "vocab_size": 40,
                                            "max_length": 16}}
    torch.manual_seed(0)
    model = build_transformer_model(NLUModel(
        kind="transformer", encoder=str(encoder), init="random", freeze_embeddings=True,
        train_layers=train_layers), {"t": 2}, meta)
    return model.eval()


def _batches():
    g = torch.Generator().manual_seed(1)
    out = []
    for lengths in ([16, 9, 4], [7, 7, 12, 3]):
        ids = torch.randint(5, 40, (len(lengths), 16), generator=g)
        mask = (torch.arange(16)[None] < torch.tensor(lengths)[:, None]).long()
        out.append({"input_ids": ids * mask, "attention_mask": mask,
                    "token_type_ids": torch.zeros_like(ids)})
    return out


def _logits(model, batches):
    with torch.no_grad():
        return [model(b, "t") for b in batches]


def _perturb_trainable(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def test_repeated_batches_skip_the_frozen_layers_and_give_the_same_bytes(tmp_path):
    model = _model(tmp_path, train_layers=1)
    batches = _batches()
    calls = []
    model.trunk.encoder.embeddings.word_embeddings.register_forward_hook(
        lambda *a: calls.append(1))
    plain = []
    for seed in (1, 2):  # two "checkpoints": only the trainable top differs
        _perturb_trainable(model, seed)
        plain.append(_logits(model, batches))
    model2 = _model(tmp_path, train_layers=1)
    model2.trunk.encoder.embeddings.word_embeddings.register_forward_hook(
        lambda *a: calls.append(1))
    calls.clear()
    with cached_frozen_prefix(model2) as cache:
        for seed, expected in zip((1, 2), plain):
            _perturb_trainable(model2, seed)
            got = _logits(model2, batches)
            assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert cache.hits == len(batches)  # the second checkpoint hit on every batch
    assert len(calls) == len(batches)  # the embeddings ran on the first pass only
    assert model2.trunk.prefix_cache is None
    with torch.no_grad():  # stubs removed: the plain forward is back
        assert torch.equal(model2(batches[0], "t"), plain[1][0])


def test_a_change_to_the_frozen_weights_is_not_served_from_the_cache(tmp_path):
    model = _model(tmp_path, train_layers=1)
    batches = _batches()
    layer0 = model.trunk.encoder.encoder.layer[0]
    with cached_frozen_prefix(model) as cache:
        _logits(model, batches)
        with torch.no_grad():
            next(layer0.parameters()).mul_(1.5)
        got = _logits(model, batches)
    assert cache.hits == 0
    assert all(torch.equal(a, b) for a, b in zip(got, _logits(model, batches)))


def test_train_mode_and_the_size_limit_bypass_the_cache(tmp_path, monkeypatch):
    model = _model(tmp_path, train_layers=1)
    batches = _batches()
    with cached_frozen_prefix(model) as cache:
        model.train()
        _logits(model, batches)
        model.eval()
        assert cache.used_bytes == 0
        _logits(model, batches)
        assert cache.used_bytes > 0 and cache.hits == 0
    monkeypatch.setattr(prefix_cache, "LIMIT_BYTES", 0)
    with cached_frozen_prefix(model) as cache:
        first = _logits(model, batches)
        again = _logits(model, batches)
    assert cache.used_bytes == 0 and cache.hits == 0
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_no_cache_without_a_frozen_prefix(tmp_path):
    from alphavil.models.multitask import build_model

    assert prefix_cache.frozen_prefix(_model(tmp_path, None).trunk.encoder) is None
    with cached_frozen_prefix(_model(tmp_path, None)) as cache:
        assert cache is None
    cnn = build_model(VisionModel(kind="cnn", channels=[4, 8], hidden=8), {"t": 2},
                      {"setting": "vision", "image_size": 16}, 0)
    with cached_frozen_prefix(cnn) as cache:
        assert cache is None


def test_evaluate_reports_are_byte_identical_with_and_without_the_cache(tmp_path, monkeypatch):
    encoder = make_tiny_encoder(tmp_path / "encoder")
    raw = nlu_raw(tmp_path, encoder, model={"train_layers": 1}, baselines=["single_task"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    _load_split_file.cache_clear()
    run_training_stages(raw)

    hits = []
    real = prefix_cache.PrefixCache.forward

    def counting(self, encoder, kwargs):
        before = self.hits
        out = real(self, encoder, kwargs)
        hits.append(self.hits - before)
        return out

    monkeypatch.setattr(prefix_cache.PrefixCache, "forward", counting)
    pipeline.evaluate("params.yaml")
    cached = (tmp_path / "metrics/per_epoch.json").read_bytes()
    assert sum(hits) > 0

    class Off:
        def __init__(self, model):
            pass

        def __enter__(self):
            return None

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(prefix_cache, "cached_frozen_prefix", Off)
    pipeline.evaluate("params.yaml")
    assert (tmp_path / "metrics/per_epoch.json").read_bytes() == cached
    assert json.loads(cached)  # a real report, not an empty file
    _load_split_file.cache_clear()
