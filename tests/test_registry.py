"""Every name params.yaml may give (alphavil/registry.py, the schema's only source of them)
resolves to a working implementation, and an unknown name is refused where one is run."""

import pytest
import torch

from alphavil import registry
from alphavil.methods import deltas as core
from alphavil.runtime import device
from alphavil.training import optim
from alphavil.config import BY_SETTING, validate
from alphavil.config.nlu import SOURCE_TASKS
from alphavil.models.multitask import MultiTaskModel
from alphavil.data.text_sources import LOADERS
from testkit.params import tiny_raw


def test_each_method_name_is_a_method_that_goes_by_that_name(workdir):
    from alphavil.training.context import RunContext
    from alphavil.methods import METHODS, get_method
    from alphavil.methods.base import Method

    workdir()
    ctx = RunContext.build(validate(tiny_raw()), 0)
    assert list(METHODS) == list(registry.METHODS)
    for name in registry.METHODS:
        cls = get_method(name)
        assert issubclass(cls, Method) and cls(ctx).name == name
        # αVIL alone runs as per-epoch stages; every other method is a baseline
        assert cls.staged == (name == registry.ALPHAVIL)
    assert set(registry.BASELINES) == set(registry.METHODS) - {registry.ALPHAVIL}


def test_each_setting_builds_its_model_kind(tmp_path):
    pytest.importorskip("transformers")
    from alphavil.models.multitask import build_model
    from testkit.images import images_raw
    from testkit.nlu import make_tiny_encoder, nlu_raw

    assert set().union(*registry.SETTING_KINDS.values()) == set(registry.MODEL_KINDS)
    assert set(BY_SETTING) == set(registry.SETTINGS) == set(registry.SETTING_KINDS)
    assert all(registry.SETTINGS[s] in kinds for s, kinds in registry.SETTING_KINDS.items())
    encoder = make_tiny_encoder(tmp_path / "enc")
    by_setting = {"vision": validate(tiny_raw()), "nlu": validate(nlu_raw(tmp_path, encoder)),
                  "images": validate(images_raw({"t": {"source": "folder", "path": "x"}}, "t"))}
    meta = {"vision": {"setting": "vision", "image_size": 28},
            "images": {"setting": "images", "image_size": 12, "channels": 3,
                       "normalise": {"mean": [0.5] * 3, "std": [0.2] * 3}},
            "nlu": {"setting": "nlu", "tokenizer": {"name": str(encoder), "vocab_size": 10}}}
    for setting, kind in registry.SETTINGS.items():
        model = by_setting[setting].model
        assert model.kind == kind
        built = build_model(model, {"t": 3}, meta[setting], seed=0)
        assert isinstance(built, MultiTaskModel) and built.heads["t"].out_features == 3


def test_each_weight_rule_updates_a_weight_from_alpha():
    rules = {name: registry.load(target) for name, target in registry.WEIGHT_RULES.items()}
    assert rules["additive"](1.0, 1.25) == 1.25 and rules["additive"](0.5, 0.75) == 0.25
    assert rules["alpha"](0.5, 0.75) == 0.75
    for name in registry.WEIGHT_RULES:  # by name, as the merge runs it
        assert core.update_weights({"a": 0.5}, {"a": 0.75}, name, None) == \
            {"a": rules[name](0.5, 0.75)}


def test_each_weight_mode_combine_and_delta_dtype_is_known_where_it_acts():
    assert {m: core.weight_scaling(0.5, 0.1, m) for m in registry.WEIGHT_MODES} == \
        {"step": (0.05, 1.0), "loss": (0.1, 0.5)}
    assert {c: core.combine_scale(c, 4) for c in registry.COMBINES} == {"sum": 1.0, "mean": 0.25}
    for bad, fn in (("steps", lambda n: core.weight_scaling(1.0, 0.1, n)),
                    ("max", lambda n: core.combine_scale(n, 2))):
        with pytest.raises(ValueError, match=f"expected one of .*got '{bad}'"):
            fn(bad)
    for name in registry.DELTA_DTYPES:
        dtype = core.delta_dtype(name)
        assert isinstance(dtype, torch.dtype) and dtype.is_floating_point
        assert str(dtype) == f"torch.{name}"


@pytest.mark.parametrize("name", registry.OPTIMIZERS)
def test_each_optimizer_takes_a_step(name):
    p = torch.nn.Parameter(torch.ones(3))
    opt = optim.make(name, [p], 0.1)
    p.grad = torch.ones(3)
    opt.step()
    assert (p < 1).all()
    assert set(registry.ALPHA_OPTIMIZERS) <= set(registry.OPTIMIZERS)


def test_an_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="expected one of sgd, adam, adamw"):
        optim.make("rmsprop", [], 0.1)


def test_each_device_and_precision_resolves():
    assert device.resolve("cpu") == torch.device("cpu")
    for name in registry.DEVICES:
        if name == "cuda" and not torch.cuda.is_available():
            with pytest.raises(device.ParamsError, match="needs a CUDA device"):
                device.resolve(name)
        else:
            assert isinstance(device.resolve(name), torch.device)
    assert device.AUTOCAST_DTYPES == {"fp32": None, "bf16": torch.bfloat16}
    assert set(device.AUTOCAST_DTYPES) == set(registry.PRECISIONS)


@pytest.mark.parametrize("pooling", registry.POOLINGS)
def test_each_pooling_gives_one_vector_per_example(pooling):
    from types import SimpleNamespace

    from alphavil.models.transformer import EncoderTrunk

    hidden = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)

    class Encoder(torch.nn.Module):
        config = SimpleNamespace(hidden_size=4)

        def forward(self, **kwargs):
            return SimpleNamespace(last_hidden_state=hidden, pooler_output=-hidden[:, 0])

    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    out = EncoderTrunk(Encoder(), pooling)({"input_ids": torch.zeros(2, 3), "attention_mask":
                                             mask})
    want = {"cls": hidden[:, 0], "pooler": -hidden[:, 0],
            "mean": torch.stack([hidden[0, :2].mean(0), hidden[1].mean(0)])}[pooling]
    assert torch.equal(out, want)


def test_each_nlu_source_of_the_schema_has_a_loader():
    assert set(SOURCE_TASKS) == set(LOADERS)

