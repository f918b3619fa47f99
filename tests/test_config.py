
import copy
import re

import pytest
import yaml

from alphavil.config import ParamsError, load_params, validate
from alphavil.workflow.schedule import epoch_block, rewrite
from testkit.params import ROOT, committed_params_file, committed_params_text, repo_params, tiny_raw


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_named_config_overlays_into_valid_params(config, tmp_path):
    from alphavil.workflow.studyfile import merged_params

    overlay = yaml.safe_load(config.read_text())
    merged = merged_params(config, committed_params_file(tmp_path))  # raises ParamsError if invalid
    assert {k: merged[k] for k in overlay} == overlay


def test_repository_params_are_valid(tmp_path):
    p = load_params(committed_params_file(tmp_path))
    assert p.target in p.tasks
    assert [e.id for e in p.epochs] == [f"ep{i}" for i in range(len(p.epochs))]


def _set(raw, dotted, value):
    node = raw
    *parents, last = dotted.split(".")
    for k in parents:
        node = node[k]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()


def _set_at(node, key, value):
    if value is _DELETE:
        del node[key]
    else:
        node[key] = value

BAD = [
    ("target", "nope", "target"),
    ("tasks.left.label", "middle", "tasks.left.label"),
    ("tasks.left.label_noise", 1.5, "tasks.left.label_noise"),
    ("alphavil.sample_ratio", 0.0, "alphavil.sample_ratio"),
    ("alphavil.sample_ratio", 1.01, "alphavil.sample_ratio"),
    ("alphavil.sample_ratio", "half", "alphavil.sample_ratio"),
    ("alphavil.weight_rule", "mul", "alphavil.weight_rule"),
    ("train.lr", 0, "train.lr"),
    ("train.lr", -1e-3, "train.lr"),
    ("train.batch_size", 0, "train.batch_size"),
    ("train.batch_size", 2.5, "train.batch_size"),
    ("train.optimizer", "lbfgs", "train.optimizer"),
    ("alpha.steps", -1, "alpha.steps"),
    ("alpha.lr", 0.0, "alpha.lr"),
    ("alpha.batch_size", 0, "alpha.batch_size"),
    ("alpha.optimizer", "rmsprop", "alpha.optimizer"),
    ("alpha.guard", "yes", "alpha.guard: expected true or false"),
    ("data.source", "imagenet", "data.source"),
    ("data.n_train", 0, "data.n_train"),
    ("data.digit_split.train", 0.0, "data.digit_split.train"),
    ("data.jitter", 20, "data.jitter"),
    ("model.kind", "mlp", "model.kind"),
    ("seeds", [], "seeds"),
    ("seeds", [0, 0], "seeds"),
    ("seeds", "0", "seeds"),
    ("baselines", ["uniform", "magic"], "baselines"),
    ("baselines", ["alphavil"], "baselines"),
    ("baselines", ["uniform", "uniform"], "baselines"),
    ("baselines", [], "baselines"),
    ("epochs", [], "epochs"),
    ("epochs", [{"id": "ep0", "prev": "base", "n": 1, "overrides": []}], "epochs[0].overrides"),
    ("alpha.lr", float("nan"), "alpha.lr"),
    ("train", _DELETE, "train.lr"),
    ("alphavil.sample_ratio", _DELETE, "alphavil.sample_ratio"),
    ("target", _DELETE, "target"),
]


@pytest.mark.parametrize("key,value,named", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_value_is_rejected_naming_the_key(key, value, named):
    raw = tiny_raw()
    _set(raw, key, value)
    with pytest.raises(ParamsError) as err:
        validate(raw)
    assert named in str(err.value)
    assert "expected" in str(err.value) or "missing" in str(err.value)


def test_broken_epoch_chain_is_rejected():
    raw = tiny_raw()
    raw["epochs"][1]["prev"] = "base"
    with pytest.raises(ParamsError, match=r"epochs\[1\]\.prev"):
        validate(raw)


def test_unknown_epoch_override_is_rejected():
    raw = tiny_raw()
    raw["epochs"][1]["overrides"] = {"momentum": 0.9}
    with pytest.raises(ParamsError, match=r"epochs\[1\]\.overrides.*momentum"):
        validate(raw)


def test_out_of_range_epoch_override_is_rejected():
    raw = tiny_raw()
    raw["epochs"][1]["overrides"] = {"sample_ratio": 2.0}
    with pytest.raises(ParamsError, match=r"epochs\[1\]\.overrides\.sample_ratio"):
        validate(raw)


def test_all_problems_are_reported_at_once():
    raw = tiny_raw()
    raw["train"]["lr"] = -1
    raw["alpha"]["steps"] = -2
    with pytest.raises(ParamsError) as err:
        validate(raw)
    assert "train.lr" in str(err.value) and "alpha.steps" in str(err.value)


def test_missing_params_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("seeds: [0\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_epoch_overrides_apply_to_that_epoch_only():
    raw = tiny_raw()
    raw["epochs"][1]["overrides"] = {"sample_ratio": 0.5, "alpha_lr": 0.2}
    p = validate(raw)
    assert p.for_epoch("ep0").alphavil.sample_ratio == raw["alphavil"]["sample_ratio"]
    ep1 = p.for_epoch("ep1")
    assert (ep1.alphavil.sample_ratio, ep1.alpha.lr) == (0.5, 0.2)
    assert ep1.alpha.steps == p.alpha.steps and ep1.train == p.train  # only what it names
    # the base params are not mutated
    assert (p.alphavil.sample_ratio, p.alpha.lr) == (raw["alphavil"]["sample_ratio"],
                                                     raw["alpha"]["lr"])


def test_schedule_rewrites_only_the_epoch_block(tmp_path):
    path = tmp_path / "params.yaml"
    text = committed_params_text()
    raw = yaml.safe_load(text)
    raw_epochs = raw["epochs"]
    raw_epochs[1]["overrides"] = {"sample_ratio": 0.5}
    path.write_text(text.replace("epochs:", "epochs:", 1))
    rewrite(path, 6)
    new = yaml.safe_load(path.read_text())
    assert [e["id"] for e in new["epochs"]] == [f"ep{i}" for i in range(6)]
    assert new["epochs"][5] == {"id": "ep5", "prev": "ep4", "n": 6, "overrides": {}}
    assert {k: v for k, v in new.items() if k != "epochs"} == \
        {k: v for k, v in raw.items() if k != "epochs"}
    assert "# The target task" in path.read_text()  # comments survive
    validate(new)
    rewrite(path, 2)
    assert len(yaml.safe_load(path.read_text())["epochs"]) == 2


def test_schedule_keeps_overrides_of_kept_epochs():
    block = epoch_block(3, [{"id": "ep1", "overrides": {"sample_ratio": 0.5}}])
    epochs = yaml.safe_load(block)["epochs"]
    assert epochs[1]["overrides"] == {"sample_ratio": 0.5}
    assert epochs[2]["overrides"] == {}


def test_two_overlays_with_disjoint_keys_merge_and_run_as_one_study(tmp_path):
    from alphavil.workflow.study import main
    from alphavil.workflow.studyfile import merged_params

    configs = [ROOT / "configs" / "target-only.yaml", ROOT / "configs" / "heldout-seeds.yaml"]
    params = committed_params_file(tmp_path)
    merged = merged_params(configs, params)
    assert list(merged["tasks"]) == ["left"] and merged["seeds"] == list(range(5, 15))
    assert main([*map(str, configs), "--params", str(params), "--no-run"]) == 0
    written = load_params(params)
    assert written.seeds == list(range(5, 15)) and list(written.tasks) == ["left"]
    header = params.read_text().splitlines()[0]
    assert "target-only.yaml" in header and "heldout-seeds.yaml" in header


def test_overlays_that_set_the_same_key_are_refused(tmp_path):
    from alphavil.workflow.studyfile import merged_params

    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("seeds: [1]\nbaselines: [uniform]\n")
    b.write_text("seeds: [2]\n")
    with pytest.raises(ParamsError, match=r"b\.yaml: keys \['seeds'\] are also set by .*a\.yaml"):
        merged_params([a, b], committed_params_file(tmp_path))


def test_study_names_the_make_target_when_the_fashion_files_are_missing(tmp_path, monkeypatch,
                                                                         capsys):
    """configs/multifashion.yaml reads Debian's dataset-fashion-mnist: without it the study
    stops before DVC starts, with one line naming `make install-fashion`, and writes no
    params.yaml."""
    import alphavil.data.digits as digits
    from alphavil.workflow.study import main

    missing = tmp_path / "fashion-mnist"  # stands in for /usr/share/datasets/fashion-mnist
    monkeypatch.setattr(digits, "INSTALLED_BY", {str(missing): "make install-fashion"})
    overlay = yaml.safe_load((ROOT / "configs" / "multifashion.yaml").read_text())
    overlay["data"]["source_args"]["path"] = str(missing)
    config = tmp_path / "multifashion.yaml"
    config.write_text(yaml.safe_dump(overlay))
    params = committed_params_file(tmp_path)
    assert main([str(config), "--params", str(params), "--no-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: data.source_args.path") and "\n" not in err
    assert "`make install-fashion`" in err
    assert params.read_text() == committed_params_text()  # not overwritten
    # a folder that exists but lacks the files gets the same hint
    missing.mkdir()
    assert main([str(config), "--params", str(params), "--no-run"]) == 2
    assert "`make install-fashion`" in capsys.readouterr().err


def test_multifashion_config_composes_paper_sized_splits_from_disjoint_pools():
    """60,000 / 10,000 / 10,000 composed images from the 70,000 items, each split from its
    own per-class pool (checked on labels shaped like Fashion-MNIST's: 7,000 per class)."""
    import numpy as np

    from alphavil.data.multimnist import split_pools

    d = yaml.safe_load((ROOT / "configs" / "multifashion.yaml").read_text())["data"]
    assert (d["n_train"], d["n_dev"], d["n_test"]) == (60000, 10000, 10000)
    labels = np.repeat(np.arange(10), 7000)
    pools = split_pools(labels, d["digit_split"], np.random.default_rng(d["seed"]))
    assert {s: len(p) for s, p in pools.items()} == {"train": 52500, "dev": 7000,
                                                     "test": 10500}
    assert len(set().union(*map(set, pools.values()))) == 70000  # disjoint, all used


# --- strict params: names, suggestions, seeds, sizes ------------------------------------

def test_unknown_keys_name_the_nearest_valid_key():
    raw = tiny_raw()
    raw["alpha"]["gaurd"] = True
    raw["lr"] = 0.1
    with pytest.raises(ParamsError) as err:
        validate(raw)
    lines = str(err.value).splitlines()
    assert lines == [
        "params.yaml: lr: unknown key (did you mean train.lr or alpha.lr?); expected one of "
        "setting, seeds, target, tasks, data, model, train, base, alphavil, alpha, diw, "
        "forkmerge, gcs, joint, budget, report, baselines, epochs",
        "params.yaml: alpha.gaurd: unknown key (did you mean alpha.guard?); expected one of "
        "init, steps, lr, optimizer, batch_size, guard, combine, fit, tol, max_iter, order, "
        "normalise, split"]


def test_seeds_span_exactly_the_range_torch_accepts():
    import torch

    torch.manual_seed(2**64 - 1)
    with pytest.raises((RuntimeError, ValueError)):
        torch.manual_seed(2**64)
    assert validate(tiny_raw(seeds=[0, 2**64 - 1])).seeds == [0, 2**64 - 1]
    for seeds in ([2**64], [-1]):
        with pytest.raises(ParamsError, match="seeds: expected"):
            validate(tiny_raw(seeds=seeds))


def test_train_device_and_precision_are_optional_choices():
    assert validate(tiny_raw(train={"device": "auto", "precision": "bf16"}))
    for key, value in (("device", "gpu"), ("precision", "fp16")):
        with pytest.raises(ParamsError, match=f"train.{key}: expected one of"):
            validate(tiny_raw(train={key: value}))


def test_cnn_weight_estimate_counts_the_models_parameters():
    from alphavil.config.memory import cnn_weights
    from alphavil.models.multitask import SmallCNN

    for size, channels, hidden in ((28, [16, 32], 64), (37, [3], 5), (64, [4, 8, 2], 7)):
        model = SmallCNN(size, channels, hidden)
        assert cnn_weights(size, channels, hidden) == sum(p.numel() for p in model.parameters())


def test_sizes_beyond_memory_are_refused_before_prepare(tmp_path, monkeypatch):
    """The image estimate covers at least the bytes prepare stores, and the limit acts at
    the estimate: one byte less memory refuses the same params."""
    from alphavil import pipeline
    from alphavil.config import memory
    from safetensors import safe_open

    raw = tiny_raw(data={"n_train": 2000})  # images outweigh one training step
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    pipeline.prepare("params.yaml")
    stored = 0
    for split in ("train", "dev", "test"):
        with safe_open(f"data/prepared/{split}.safetensors", "pt") as f:
            stored += f.get_tensor("images").numel()  # one byte per pixel
    estimate = memory.image_bytes(validate(raw).data)
    assert estimate >= stored
    monkeypatch.setattr(memory, "physical_memory", lambda: estimate)
    validate(raw)
    monkeypatch.setattr(memory, "physical_memory", lambda: estimate - 1)
    with pytest.raises(ParamsError, match=r"data\.n_train: expected sizes that fit .* GiB"):
        validate(raw)


def test_non_utf8_and_broken_yaml_are_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes(b"seeds: [0]\ntarget: l\xe9ft\n")
    with pytest.raises(ParamsError, match=r"^\S+params\.yaml: expected UTF-8 text, got byte "
                                          r"0xe9 at offset 20$"):
        load_params(path)
    path.write_text("seeds: [0\ntarget: left\n")
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert "\n" not in str(err.value) and "not valid YAML at line" in str(err.value)


def _paths(node, at=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield at + (k,)
            yield from _paths(v, at + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield at + (i,)
            yield from _paths(v, at + (i,))


@pytest.mark.parametrize("setting", ["vision", "nlu"])
def test_any_key_set_to_any_odd_value_is_a_params_error(setting):
    """Every key of the repository's params (and of the NLU overlay, with a GLUE and a files
    task), set to a value of the wrong kind or left out: a ParamsError whose every line names
    a key, never a TypeError or the like from a check that assumed the type."""
    raw = repo_params()
    raw["train"].update(device="cpu", precision="fp32")  # optional keys: fuzzed too
    if setting == "nlu":
        raw.update(yaml.safe_load((ROOT / "configs" / "nlu.yaml").read_text()))
        raw["tasks"]["g"] = {"source": "glue", "name": "rte", "revision": "main",
                             "label_noise": 0.1, "metric": "f1"}
        raw["tasks"]["f"] = {"source": "files", "train": "x.csv", "text": ["a"], "label": "y",
                             "label_names": ["no", "yes"], "dev": None, "format": "csv"}
        raw["model"]["encoder"] = raw["data"]["tokenizer"] = "org/encoder"
        raw["model"]["encoder_revision"] = raw["data"]["tokenizer_revision"] = "v1"
    else:
        raw["data"].update(source="hf", source_args={"name": "org/digits", "revision": "v1"})
    validate(raw)
    odd = [None, [], ["a"], {}, {"a": 1}, "x", "", True, 2**70, -1, 1.5, float("nan")]
    for path in _paths(raw):
        for value in [*odd, _DELETE]:
            bad = copy.deepcopy(raw)
            node = bad
            for k in path[:-1]:
                node = node[k]
            if value is _DELETE and isinstance(node, list):
                continue
            _set_at(node, path[-1], value)
            try:
                validate(bad)
            except ParamsError as err:
                assert all(re.match(r"params\.yaml: [\w.\[\]-]+: ", line)
                           for line in str(err).splitlines()), (path, value, str(err))
