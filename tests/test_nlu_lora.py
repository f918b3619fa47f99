"""model.lora: LoRA adapters (peft) as the trainable set of the NLU encoder. What trains is
what deltas, checkpoints and α merges hold, so the adapters (and heads) must be all of it,
θ_0 must compute what the encoder without adapters computes, and each knob must act."""

import json

import pytest
import torch

from alphavil.store import layout
from alphavil.store.artifacts import load_checkpoint, load_tensors
from alphavil.config import ParamsError, validate
from testkit.params import committed_params_file
from needs import needs_module
from testkit.nlu import full_run, make_tiny_encoder, nlu_raw

needs_module("transformers")
needs_module("peft")

LORA = {"rank": 4, "alpha": 8.0, "dropout": 0.0, "targets": ["query", "value"]}
META_VOCAB = 10


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return make_tiny_encoder(tmp_path_factory.mktemp("enc") / "encoder")


def build(encoder, seed=0, **model):
    from alphavil.config.nlu import NLUModel
    from alphavil.models.multitask import build_model

    mp = {"kind": "transformer", "encoder": str(encoder), "init": "random",
          "pooling": "mean", "dropout": 0.0, "freeze_embeddings": True,
          "train_layers": None, **model}
    meta = {"setting": "nlu", "tokenizer": {"name": str(encoder), "vocab_size": META_VOCAB}}
    return build_model(NLUModel.model_validate(mp), {"a": 2, "b": 3}, meta, seed)


def batch(n=4, length=9):
    g = torch.Generator().manual_seed(1)
    return {"input_ids": torch.randint(5, 20, (n, length), generator=g),
            "attention_mask": torch.ones(n, length, dtype=torch.long)}


def trainable(model):
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def test_only_adapters_and_heads_train(encoder):
    names = set(trainable(build(encoder, lora=LORA)))
    trunk = {n for n in names if n.startswith("trunk.")}
    assert names - trunk == {"heads.a.weight", "heads.a.bias", "heads.b.weight", "heads.b.bias"}
    # 2 layers × (query, value) × (A, B); no pretrained weight, no bias, no pooler
    assert len(trunk) == 8
    assert all(".lora_A." in n or ".lora_B." in n for n in trunk)
    assert {n.split(".lora_")[0].rsplit(".", 1)[1] for n in trunk} == {"query", "value"}


def test_theta0_computes_what_the_encoder_without_adapters_computes(encoder):
    """B starts at zero: adding adapters must not change the pretrained function (a nonzero
    init would make θ_0 a perturbed encoder for every method)."""
    plain, lora = build(encoder), build(encoder, lora=LORA)
    plain.eval(), lora.eval()
    x = batch()
    with torch.no_grad():
        assert torch.equal(plain.features(x), lora.features(x))
    assert all(float(p.detach().abs().max()) == 0.0 for n, p in trainable(lora).items()
               if "lora_B" in n)


def _query_module(model, layer):
    return model.trunk.encoder.base_model.model.encoder.layer[layer].attention.self.query


@pytest.mark.parametrize("rank,alpha", [(4, 8.0), (2, 8.0), (4, 2.0)])
def test_rank_and_alpha_give_the_lora_update(encoder, rank, alpha):
    """query(x) = W x + b + (alpha / rank) · B A x, computed by hand from the module's
    tensors: a wrong scaling or a transposed factor changes it."""
    model = build(encoder, lora={**LORA, "rank": rank, "alpha": alpha})
    q = _query_module(model, 1)
    a, b = q.lora_A["default"].weight, q.lora_B["default"].weight
    assert tuple(a.shape) == (rank, 16) and tuple(b.shape) == (16, rank)
    with torch.no_grad():
        b.copy_(torch.randn(b.shape, generator=torch.Generator().manual_seed(3)))
        x = torch.randn(5, 16, generator=torch.Generator().manual_seed(4))
        base = q.base_layer
        expected = base.weight @ x.T + base.bias[:, None] + (alpha / rank) * (b @ (a @ x.T))
        model.eval()
        assert torch.allclose(q(x), expected.T, atol=1e-5)


def test_targets_choose_the_modules(encoder):
    names = trainable(build(encoder, lora={**LORA, "targets": ["key"]}))
    trunk = [n for n in names if n.startswith("trunk.")]
    assert len(trunk) == 4 and all(".key.lora_" in n for n in trunk)


def test_train_layers_puts_adapters_in_the_top_layers_only(encoder):
    trunk = [n for n in trainable(build(encoder, lora=LORA, train_layers=1))
             if n.startswith("trunk.")]
    assert len(trunk) == 4 and all(".layer.1." in n for n in trunk)


def test_lora_dropout_acts_in_training_only(encoder):
    outs = {}
    for p in (0.0, 0.5):
        model = build(encoder, lora={**LORA, "dropout": p})
        with torch.no_grad():
            for n, t in trainable(model).items():  # B = 0 would hide the dropout
                if "lora_B" in n:
                    t.copy_(torch.ones_like(t))
        model.train()
        x = batch()
        with torch.no_grad():
            outs[p] = (model.features(x), model.features(x))
    assert torch.equal(*outs[0.0])
    assert not torch.equal(*outs[0.5])


def test_unknown_target_module_is_a_one_line_error(encoder, capsys, tmp_path):
    """A stage that builds the model stops with `error: model.lora.targets ...` and exit 2
    (cli.run), not a traceback."""
    from alphavil import cli

    with pytest.raises(SystemExit) as exit_:
        cli.run(str(committed_params_file(tmp_path)),  # valid params: the model fails
                lambda pipeline, params: build(encoder,
                                               lora={**LORA, "targets": ["no_such_module"]}))
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model.lora.targets ['no_such_module']") and "\n" not in err


BAD = [({**LORA, "rank": 0}, "model.lora.rank"),
       ({**LORA, "rank": 2.5}, "model.lora.rank"),
       ({**LORA, "alpha": 0}, "model.lora.alpha"),
       ({**LORA, "dropout": 1.0}, "model.lora.dropout"),
       ({**LORA, "targets": []}, "model.lora.targets"),
       ({**LORA, "targets": "query"}, "model.lora.targets"),
       ({**LORA, "r": 8}, "model.lora"),
       ("yes", "model.lora")]


@pytest.mark.parametrize("lora,named", BAD, ids=[n + str(i) for i, (_, n) in enumerate(BAD)])
def test_bad_lora_values_are_rejected_naming_the_key(tmp_path, encoder, lora, named):
    raw = nlu_raw(tmp_path, encoder, model={"lora": lora})
    with pytest.raises(ParamsError, match=named.replace(".", r"\.")):
        validate(raw)


def test_lora_with_zero_train_layers_is_rejected(tmp_path, encoder):
    raw = nlu_raw(tmp_path, encoder, model={"lora": LORA, "train_layers": 0})
    with pytest.raises(ParamsError, match="model.train_layers"):
        validate(raw)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, encoder):
    tmp = tmp_path_factory.mktemp("lora_run")
    raw = nlu_raw(tmp, encoder, model={"lora": LORA}, baselines=["single_task"])
    with full_run(tmp, raw):
        yield tmp, raw


def test_deltas_and_checkpoints_hold_adapters_and_heads_only(lora_run):
    tmp, raw = lora_run
    theta, _ = load_checkpoint(tmp / layout.base_dir(0))
    assert all(".lora_" in n or n.startswith("heads.") for n in theta)
    delta, _ = load_tensors(tmp / layout.delta_path(0, "ep0", "nli"))
    assert delta and all(".lora_" in n or n.startswith("heads.nli.") for n in delta)
    assert any(float(v.abs().max()) > 0 for n, v in delta.items() if "lora_B" in n)


def test_merge_is_in_adapter_space(lora_run):
    """The merged A and B are θ + Σ α_k δ_k of the stored A and B themselves (not a merge of
    the products B A), recomputed here from the files."""
    tmp, raw = lora_run
    theta, _ = load_checkpoint(tmp / layout.base_dir(0))
    merged, _ = load_checkpoint(tmp / layout.checkpoint_dir("alphavil", 0, "ep0"))
    alphas = json.loads((tmp / layout.alpha_path(0, "ep0")).read_text())["alpha"]
    expected = {n: v.double().clone() for n, v in theta.items()}
    for task, a in alphas.items():
        delta, _ = load_tensors(tmp / layout.delta_path(0, "ep0", task))
        for n, d in delta.items():
            expected[n] += a * d.double()
    lora_names = [n for n in theta if ".lora_" in n]
    assert lora_names
    for n in lora_names:
        assert torch.allclose(merged[n].double(), expected[n], atol=1e-6), n
    summary = json.loads((tmp / "metrics/summary.json").read_text())
    assert set(summary["methods"]) == {"alphavil", "single_task"}
