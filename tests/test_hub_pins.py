"""Hub loads are pinned and fail clearly: a user-named hub dataset or encoder takes a
`revision` that reaches the loader call, weights load only from safetensors, and a hub name
that cannot load offline is one line naming the key. Nothing here is downloaded: the
loaders are replaced by recorders, or the hub is switched off."""

import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from alphavil.config.nlu import NLU_TASK, NLUModel
from alphavil.data.text_sources import SourceError
from testkit.params import ROOT, tiny_raw
from needs import needs_module

datasets = needs_module("datasets")
transformers = needs_module("transformers")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty cache
    # the hub client read HF_HUB_OFFLINE when this module imported it: without this the
    # in-process load below tries the network and waits out its timeouts
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return {**os.environ}


def _digit_dataset(n: int = 20):
    from PIL import Image

    imgs = np.random.default_rng(0).integers(0, 256, (n, 28, 28)).astype(np.uint8)
    return datasets.Dataset.from_dict(
        {"image": [Image.fromarray(a) for a in imgs], "label": list(np.arange(n) % 10)},
        features=datasets.Features({"image": datasets.Image(),
                                    "label": datasets.ClassLabel(num_classes=10)}))


def test_hf_digit_source_passes_its_revision_to_load_dataset(monkeypatch):
    from alphavil.data.digits import load_digits

    calls = []

    def fake_load_dataset(name, **kwargs):
        calls.append((name, kwargs))
        return _digit_dataset()

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    x, y = load_digits("hf", {"name": "someone/mnist", "revision": "0123abc"})
    assert calls == [("someone/mnist", {"split": "train", "revision": "0123abc"})]
    assert x.shape == (20, 28, 28) and y.tolist() == list(np.arange(20) % 10)
    load_digits("hf", {"name": "someone/mnist"})
    assert calls[1][1]["revision"] is None  # unpinned: the hub's default branch


def test_hf_digit_source_has_no_default_dataset(tiny):
    from alphavil.config import ParamsError, validate
    from alphavil.data.digits import DigitSourceError, load_digits

    with pytest.raises(ParamsError, match=r"data\.source_args\.name: missing"):
        validate(tiny(data={"source": "hf", "source_args": {"split": "train"}}))
    with pytest.raises(DigitSourceError, match=r"data\.source_args\.name"):
        load_digits("hf", {"nmae": "ylecun/mnist"})


def test_hf_hub_name_that_cannot_load_offline_is_one_line(tmp_path, offline):
    raw = tiny_raw(data={"source": "hf", "source_args": {"name": "nobody/no-such-digits",
                                                          "revision": "v1"}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / "prepare.py")], cwd=tmp_path,
                          env={**offline, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(errors) == 1 and errors[0].startswith("error: data.source_args.name: could not "
                                                     "load 'nobody/no-such-digits' at revision "
                                                     "'v1'"), proc.stderr
    assert not (tmp_path / "data").exists()


def test_glue_task_passes_its_revision_to_load_dataset(monkeypatch):
    from alphavil.data import text_sources as sources

    calls = []

    class FakeDatasets:
        @staticmethod
        def load_dataset(path, name, **kwargs):
            calls.append((path, name, kwargs))
            split = datasets.Dataset.from_dict({"sentence1": ["a b"], "sentence2": ["c"],
                                                "label": [0]})
            return datasets.DatasetDict({"train": split, "validation": split})

    monkeypatch.setattr(sources, "_datasets", lambda: FakeDatasets)
    sources.load_glue(NLU_TASK.validate_python({"source": "glue", "name": "rte",
                                                "revision": "abc"}), "tasks.t")
    assert calls == [("nyu-mll/glue", "rte", {"revision": "abc"})]


def _record(monkeypatch, cls, calls, result):
    def fake(path, *args, **kwargs):
        calls.append((cls.__name__, path, kwargs))
        return result
    monkeypatch.setattr(cls, "from_pretrained", fake)


def test_hub_encoder_and_tokenizer_load_their_revision_from_safetensors(monkeypatch):
    from alphavil.data.encoders import load_tokenizer
    from alphavil.models.transformer import load_encoder

    calls = []
    config = transformers.BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1,
                                     num_attention_heads=1, intermediate_size=8)
    _record(monkeypatch, transformers.AutoConfig, calls, config)
    _record(monkeypatch, transformers.AutoModel, calls, "the model")
    _record(monkeypatch, transformers.AutoTokenizer, calls, "the tokenizer")
    model = NLUModel(kind="transformer", encoder="org/encoder", encoder_revision="v1.2",
                     init="pretrained")
    assert load_encoder(model) == "the model"
    assert load_tokenizer("org/encoder", "v1.2") == "the tokenizer"
    by_class = {name: (path, kw) for name, path, kw in calls}
    assert by_class["AutoConfig"] == ("org/encoder", {"revision": "v1.2"})
    assert by_class["AutoModel"] == ("org/encoder", {"config": config, "revision": "v1.2",
                                                     "use_safetensors": True})
    assert by_class["AutoTokenizer"] == ("org/encoder", {"revision": "v1.2"})


def test_a_revision_for_a_local_folder_is_refused(tmp_path):
    from alphavil.data.encoders import load_tokenizer

    with pytest.raises(SourceError, match=r"data\.tokenizer_revision: expected null"):
        load_tokenizer(str(tmp_path), "v1")


def test_hub_tokenizer_that_cannot_load_offline_is_one_line(offline):
    from alphavil.data.encoders import load_tokenizer

    with pytest.raises(SourceError) as err:
        load_tokenizer("nobody/no-such-encoder", "v1")
    msg = str(err.value)
    assert msg.startswith("data.tokenizer 'nobody/no-such-encoder': cannot load") and \
        "revision 'v1'" in msg and "\n" not in msg


def test_prepared_data_of_another_tokenizer_revision_is_refused():
    from alphavil.models.transformer import build_transformer_model

    meta = {"setting": "nlu", "tokenizer": {"name": "org/encoder", "revision": "v1"}}
    with pytest.raises(SourceError, match="tokenised with 'org/encoder' at revision 'v1'"):
        build_transformer_model(NLUModel(kind="transformer", encoder="org/encoder",
                                         encoder_revision="v2"), {"t": 2}, meta)
