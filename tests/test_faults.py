"""Bad input and damaged artifacts: every one stops with an error naming the key or the
file, before compute and never as a silent wrong merge. (More invalid-params cases:
tests/test_config.py.)"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from alphavil import pipeline
from alphavil.store import layout
from alphavil.store.artifacts import (ArtifactError, load_checkpoint, load_tensors, read_json,
                                      save_delta, save_tensors)
from alphavil.config import ParamsError, load_params, validate
from testkit.artifacts import fit_first_epoch_alpha, flip_a_tensor_byte
from testkit.params import ROOT, committed_params_text, tiny_raw

# --- params.yaml: kinds of mistakes test_config.py does not cover ----------------------

_DELETE = object()


def _set(raw, dotted, value):
    node = raw
    *parents, last = re.split(r"\.(?![^\[]*\])", dotted)
    for k in parents:
        m = re.fullmatch(r"(\w+)\[(\d+)\]", k)
        node = node[m[1]][int(m[2])] if m else node[k]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


BAD = [  # (key to set, value, key the message must name)
    ("tasks", {"left": "left", "right": {"label": "right"}}, "tasks.left"),
    ("tasks", {}, "tasks"),
    ("tasks", ["left", "right"], "tasks"),
    ("tasks.left.label", 3, "tasks.left.label"),
    ("tasks.left.weight", 2.0, "tasks.left.weight"),
    ("tasks.left.label", _DELETE, "tasks.left.label"),
    ("train.lr", "fast", "train.lr"),
    ("train.lr", float("inf"), "train.lr"),
    ("train.batch_size", True, "train.batch_size"),
    ("alphavil.sample_ratio", -0.5, "alphavil.sample_ratio"),
    ("alphavil.delta_dtype", "int8", "alphavil.delta_dtype"),
    ("alpha.steps", 2.5, "alpha.steps"),
    ("alpha.init", "one", "alpha.init"),
    ("setting", "audio", "setting"),
    ("data.digit_split", {"train": 0.7, "dev": 0.2, "test": 0.2}, "data.digit_split"),
    ("data.canvas", 20, "data.canvas"),
    ("epochs", "ep0", "epochs"),
    ("epochs", [["ep0", "base", 1]], "epochs[0]"),
    ("epochs", [{"id": "ep0", "prev": "base", "n": 2, "overrides": {}}], "epochs[0].n"),
    ("epochs", [{"id": "e0", "prev": "base", "n": 1, "overrides": {}}], "epochs[0].id"),
    ("epochs", [{"id": "ep0", "prev": "base", "n": 1, "overrides": [1]}], "epochs[0].overrides"),
    ("epochs", [{"id": "ep0", "prev": "base", "n": 1, "extra": 1}], "epochs[0].extra"),
    ("epochs", [{"id": "ep0", "prev": "base", "n": 1, "overrides": {"alpha_steps": -3}}],
     "epochs[0].overrides.alpha_steps"),
    ("baselines", "uniform", "baselines"),
    ("seeds", [-1], "seeds"),
    ("seeds", [0.5], "seeds"),
]


@pytest.mark.parametrize("key,value,named", BAD, ids=[f"{k}={v!r}"[:60] for k, v, _ in BAD])
def test_bad_value_is_rejected_naming_key_and_expected_value(key, value, named):
    raw = tiny_raw()
    _set(raw, key, value)
    with pytest.raises(ParamsError) as err:
        validate(raw)
    msg = str(err.value)
    assert re.search(rf"(^|\s){re.escape(named)}(:|\s)", msg), msg
    assert "expected" in msg or "missing" in msg or "unknown" in msg, msg


def test_duplicate_task_name_is_rejected_not_collapsed(tmp_path):
    text = committed_params_text()
    text = text.replace("  right: {label: right, label_noise: 0.0}",
                        "  right: {label: right, label_noise: 0.0}\n"
                        "  left: {label: right, label_noise: 1.0}")
    assert text.count("  left: {") == 2
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match=r"tasks\.left: expected each key once.*lines \d+ "
                                          r"and \d+"):
        load_params(tmp_path / "params.yaml")


def test_duplicate_section_is_rejected(tmp_path):
    (tmp_path / "params.yaml").write_text(committed_params_text()
                                          + "\ntrain:\n  lr: 0.5\n")
    with pytest.raises(ParamsError, match=r"train: expected each key once"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("path", [None, "does/not/exist", "."])
def test_missing_data_files_stop_prepare_before_loading(tmp_path, monkeypatch, path):
    raw = tiny_raw()
    raw["data"]["source"] = "mnist_idx"
    raw["data"]["source_args"] = {} if path is None else {"path": path}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("alphavil.data.digits.load_digits",
                        lambda *a, **k: pytest.fail("prepare loaded data"))
    with pytest.raises(ParamsError, match=r"data\.source_args\.path: (expected|missing)"):
        pipeline.prepare("params.yaml")
    assert not (tmp_path / "data").exists()


# --- damaged checkpoints and deltas ----------------------------------------------------

@pytest.fixture(scope="module")
def _epoch0_template(tmp_path_factory):
    from alphavil.data.prepared import _load_split_file

    root = tmp_path_factory.mktemp("epoch0")
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_raw(), sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        _load_split_file.cache_clear()
        pipeline.prepare("params.yaml")
        fit_first_epoch_alpha()
    _load_split_file.cache_clear()
    return root


@pytest.fixture
def epoch0(_epoch0_template, tmp_path, monkeypatch):
    """An epoch's fine-tunes and α done in a fresh temp dir; merge@0-ep0 not yet run."""
    from alphavil.data.prepared import _load_split_file

    root = tmp_path / "w"
    shutil.copytree(_epoch0_template, root, ignore=shutil.ignore_patterns("logs"))
    monkeypatch.chdir(root)
    _load_split_file.cache_clear()
    yield root
    _load_split_file.cache_clear()


def _garbage(p: Path):
    p.write_bytes(bytes(range(256)) * 8)


def _truncate_half(p: Path):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _cut_tail(p: Path):
    p.write_bytes(p.read_bytes()[:-7])


def _empty(p: Path):
    p.write_bytes(b"")


def _pickle(p: Path):
    tensors = {k: v.clone() for k, v in load_tensors(p)[0].items()}
    torch.save(tensors, p)  # the pickle format: must be refused, never unpickled


def _flip_header_length(p: Path):
    data = bytearray(p.read_bytes())
    data[0:8] = (len(data) * 4).to_bytes(8, "little")
    p.write_bytes(bytes(data))


DAMAGE = [_garbage, _truncate_half, _cut_tail, _empty, _pickle, _flip_header_length,
          flip_a_tensor_byte]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("victim", ["delta", "checkpoint"])
def test_damaged_file_stops_the_merge_naming_it(epoch0, damage, victim):
    path = (layout.delta_path(0, "ep0", "right") if victim == "delta"
            else layout.base_dir(0) / "model.safetensors")
    damage(path)
    with pytest.raises(ArtifactError) as err:
        pipeline.merge(0, "ep0", {})
    assert str(path) in str(err.value)
    assert not layout.checkpoint_dir("alphavil", 0, "ep0").exists()


@pytest.mark.parametrize("stage", ["finetune", "estimate_alpha"])
def test_a_flipped_byte_in_the_prepared_data_is_refused(epoch0, stage):
    path = layout.DATA / ("train.safetensors" if stage == "finetune" else "dev.safetensors")
    flip_a_tensor_byte(path)
    before = layout.delta_path(0, "ep0", "left").read_bytes()
    run = {"finetune": lambda: pipeline.finetune(0, "ep0", "left", {}),
           "estimate_alpha": lambda: pipeline.estimate_alpha(0, "ep0", {})}[stage]
    with pytest.raises(ArtifactError, match=f"^{re.escape(str(path))}: tensor data does not"):
        run()
    assert layout.delta_path(0, "ep0", "left").read_bytes() == before


def test_a_prepared_split_copied_onto_another_is_refused(epoch0):
    shutil.copy(layout.DATA / "train.safetensors", layout.DATA / "dev.safetensors")
    with pytest.raises(ArtifactError, match=r"dev\.safetensors: holds the 'train' split"):
        pipeline.estimate_alpha(0, "ep0", {})


# --- JSON artifacts: malformed, non-finite or of another run --------------------------

def _json_edit(change):
    def edit(text):
        obj = json.loads(text)
        change(obj)
        return json.dumps(obj)  # json writes NaN / Infinity, as a hand edit could
    return edit


def _truncate(text):
    return text[: len(text) // 2]


ALPHA = str(layout.alpha_path(0, "ep0"))
STATE = str(layout.base_dir(0) / "state.json")
META = str(layout.DATA / "meta.json")
BAD_JSON = [  # (file, edit, what the message says after "<file>: ")
    (ALPHA, _truncate, "corrupt JSON"),
    (ALPHA, _json_edit(lambda r: r["alpha"].update(right=float("nan"))), "non-finite number NaN"),
    (ALPHA, _json_edit(lambda r: r["alpha"].update(right=float("inf"))),
     "non-finite number Infinity"),
    (ALPHA, lambda t: t.replace('"alpha": {', '"alpha": {"x": 1e999, ', 1),
     "non-finite number 1e999"),
    (ALPHA, _json_edit(lambda r: r["alpha"].update(right="1.2")),
     r"alpha\.right: expected a number or null, got '1\.2'"),
    (ALPHA, _json_edit(lambda r: r["alpha"].pop("right")),
     r"alpha: expected a number for each of the tasks \['left', 'right'\]"),
    (ALPHA, _json_edit(lambda r: r.update(guard=[])), "guard: expected an object"),
    (ALPHA, _json_edit(lambda r: r.update(guard={"accepted": "yes"})),
     "guard.accepted: expected true or false"),
    (ALPHA, _json_edit(lambda r: r.update(epoch="ep1")), "epoch: expected 'ep0', got 'ep1'"),
    (ALPHA, lambda t: f"[{t}]", "expected a JSON object, got list"),
    (STATE, lambda t: "{", "corrupt JSON"),
    (STATE, _json_edit(lambda s: s["weights"].update(right=float("nan"))),
     "non-finite number NaN"),
    (STATE, _json_edit(lambda s: s["weights"].update(right=True)),
     r"weights\.right: expected a number, got True"),
    (STATE, _json_edit(lambda s: s.pop("weights")), "weights: expected a number for each"),
    (META, _truncate, "corrupt JSON"),
    (META, _json_edit(lambda m: m.update(image_size=float("nan"))), "non-finite number NaN"),
    (META, _json_edit(lambda m: m["tasks"]["left"].update(num_classes="10")),
     r"tasks\.left\.num_classes: expected an integer >= 1, got '10'"),
    (META, _json_edit(lambda m: m.update(tasks=["left", "right"])), "tasks: expected an object"),
    (META, _json_edit(lambda m: m["tasks"].pop("right")), r"prepared data lacks tasks \['right'\]"),
    (META, _json_edit(lambda m: m.update(setting="audio")), "setting: expected 'vision', 'nlu' or 'images'"),
]


@pytest.mark.parametrize("path,edit,message", BAD_JSON,
                         ids=[f"{Path(p).name}-{m[:30]}" for p, _, m in BAD_JSON])
def test_a_bad_json_artifact_stops_the_stage_naming_the_file(epoch0, path, edit, message):
    Path(path).write_text(edit(Path(path).read_text()))
    with pytest.raises(ArtifactError) as err:
        pipeline.merge(0, "ep0", {})
    assert re.match(f"{re.escape(path)}: {message}", str(err.value)), str(err.value)
    assert "\n" not in str(err.value)
    assert not layout.checkpoint_dir("alphavil", 0, "ep0").exists()


@pytest.mark.parametrize("path", [ALPHA, STATE, META], ids=lambda p: Path(p).name)
def test_the_stage_script_prints_one_error_line_naming_the_file(epoch0, path):
    """What a user sees: cli.run turns the ArtifactError into one line and exit status 2."""
    text = Path(path).read_text()
    Path(path).write_text(re.sub(r"(?<=: )\d+\.\d+(e-?\d+)?", "NaN", text, count=1))
    assert "NaN" in Path(path).read_text()
    proc = subprocess.run([sys.executable, str(ROOT / "stages/merge.py"), "--seed", "0",
                           "--epoch", "ep0"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"error: {path}: non-finite number NaN; "
                                        "JSON artifacts hold finite numbers only"]


def test_another_seeds_theta0_copied_into_place_is_refused(workdir):
    workdir(seeds=[0, 1])
    for seed in (0, 1):
        pipeline.train_base(seed)
    s0 = layout.base_dir(0)
    shutil.rmtree(s0)
    shutil.copytree(layout.base_dir(1), s0)
    with pytest.raises(ArtifactError, match=f"^{re.escape(str(s0 / 'state.json'))}: is the "
                                            "checkpoint of seed 1, expected 0"):
        pipeline.finetune(0, "ep0", "left", {})
    # only its weights copied: the two files of the folder disagree
    pipeline.train_base(0)
    shutil.copy(layout.base_dir(1) / "model.safetensors", s0 / "model.safetensors")
    with pytest.raises(ArtifactError, match="state.json is of seed 0, model.safetensors of 1"):
        pipeline.finetune(0, "ep0", "left", {})
    assert not layout.delta_path(0, "ep0", "left").exists()


def test_a_checkpoint_of_another_method_and_epoch_is_refused(epoch0):
    """θ_0 copied where the merge of ep0 belongs: its weights are valid for the model and
    its state has task weights, so only its identity tells."""
    pipeline.merge(0, "ep0", {})
    ep0 = layout.checkpoint_dir("alphavil", 0, "ep0")
    shutil.rmtree(ep0)
    shutil.copytree(layout.base_dir(0), ep0)
    with pytest.raises(ArtifactError, match=f"^{re.escape(str(ep0 / 'state.json'))}: is the "
                                            "checkpoint of method 'base', expected 'alphavil'"):
        pipeline.finetune(0, "ep1", "left", {})
    assert not layout.delta_path(0, "ep1", "left").exists()


def test_delta_from_another_model_is_refused(epoch0):
    """Same base digest forged in, but shapes of a wider model: shapes are checked too."""
    path = layout.delta_path(0, "ep0", "left")
    delta, meta = load_tensors(path)
    name = next(n for n in delta if n.startswith("trunk.") and delta[n].dim() == 4)
    delta[name] = torch.zeros(delta[name].shape[0] * 2, *delta[name].shape[1:])
    save_tensors(path, delta, meta)  # a consistent digest: the shape check must catch it
    with pytest.raises(ArtifactError, match=rf"{re.escape(str(path))}: parameter '{name}' is"):
        pipeline.merge(0, "ep0", {})


def test_delta_of_a_parameter_the_model_lacks_is_refused(epoch0):
    path = layout.delta_path(0, "ep0", "left")
    delta, meta = load_tensors(path)
    delta["heads.middle.weight"] = torch.zeros(3, 3)
    save_tensors(path, delta, meta)
    with pytest.raises(ArtifactError, match="has parameters the model does not have"):
        pipeline.merge(0, "ep0", {})


def test_delta_from_another_base_checkpoint_is_refused(epoch0):
    path = layout.delta_path(0, "ep0", "left")
    delta, meta = load_tensors(path)
    save_delta(path, delta, task="left", epoch="ep0", base_digest="0" * 16, examples=1)
    with pytest.raises(ArtifactError, match="re-run its fine-tune"):
        pipeline.merge(0, "ep0", {})


def test_delta_copied_onto_another_task_is_refused(epoch0):
    shutil.copy(layout.delta_path(0, "ep0", "left"), layout.delta_path(0, "ep0", "right"))
    with pytest.raises(ArtifactError, match="holds the delta of task 'left', expected 'right'"):
        pipeline.merge(0, "ep0", {})
    with pytest.raises(ArtifactError, match="expected 'right'"):
        pipeline.estimate_alpha(0, "ep0", {})


def test_missing_delta_is_named(epoch0):
    layout.delta_path(0, "ep0", "right").unlink()
    with pytest.raises(ArtifactError, match=r"missing deltas .*right\.safetensors"):
        pipeline.merge(0, "ep0", {})


def test_checkpoint_of_another_model_is_refused(epoch0, monkeypatch):
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["model"]["hidden"] = 24
    Path("params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ArtifactError, match=r"checkpoints/s0/base: parameter .* is"):
        pipeline.merge(0, "ep0", {})


@pytest.mark.parametrize("dtype", ["bfloat16", "float64"])
def test_narrow_and_wide_deltas_merge_as_theta_plus_alpha_delta(workdir, dtype):
    workdir(alphavil={"delta_dtype": dtype})
    fit_first_epoch_alpha()
    pipeline.merge(0, "ep0", {})
    theta, _ = load_checkpoint(layout.base_dir(0))
    alpha = read_json(layout.alpha_path(0, "ep0"))["alpha"]
    deltas = {t: load_tensors(layout.delta_path(0, "ep0", t))[0] for t in alpha}
    assert {d.dtype for t in deltas for d in deltas[t].values()} == {getattr(torch, dtype)}
    merged, _ = load_checkpoint(layout.checkpoint_dir("alphavil", 0, "ep0"))
    for name, value in theta.items():
        expected = value.double() + sum(alpha[t] * d[name].double()
                                        for t, d in deltas.items() if name in d)
        assert merged[name].dtype == value.dtype
        torch.testing.assert_close(merged[name], expected.float(), rtol=1e-6, atol=0)
    assert any(not torch.equal(merged[n], theta[n]) for n in theta)


def test_no_pickle_based_loading_anywhere():
    pattern = re.compile(r"torch\.load\(|import pickle|from pickle|pickle\.load|"
                         r"\bcloudpickle\b|joblib\.load|numpy\.load\(|np\.load\(")
    hits = []
    for folder in ("alphavil", "stages", "benchmarks"):
        for py in (ROOT / folder).rglob("*.py"):
            for i, line in enumerate(py.read_text().splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{py.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, hits


# --- NaN / inf: stop naming the task and the epoch -------------------------------------

def test_diverging_training_loss_names_task_and_epoch(workdir):
    workdir()
    pipeline.train_base(0)
    state_path = layout.base_dir(0) / "state.json"
    state = json.loads(state_path.read_text())
    state["weights"]["right"] = 1e30  # a valid weight; step size w_k·lr makes θ explode
    state_path.write_text(json.dumps(state))
    with pytest.raises(FloatingPointError, match=r"epoch ep0, fine-tune of task 'right'.*"
                                                 r"loss of task 'right' is (nan|inf)"):
        pipeline.finetune(0, "ep0", "right", {})
    assert not layout.delta_path(0, "ep0", "right").exists()


def test_exploding_alpha_names_target_and_epoch(epoch0):
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["alpha"]["lr"] = 1e30
    raw["alpha"]["optimizer"] = "sgd"
    Path("params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(FloatingPointError,
                       match=r"seed 0, epoch ep0, α estimation: .*(target task 'left'|α became)"):
        pipeline.estimate_alpha(0, "ep0", {})


def test_overflowing_merge_names_the_epoch(epoch0):
    path = layout.alpha_path(0, "ep0")
    record = json.loads(path.read_text())
    record["alpha"]["right"] = 1e300  # finite, but θ + α·δ overflows float32
    path.write_text(json.dumps(record))
    with pytest.raises(FloatingPointError, match=r"seed 0, epoch ep0: merged parameter"):
        pipeline.merge(0, "ep0", {})
    assert not layout.checkpoint_dir("alphavil", 0, "ep0").exists()


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_thread_count_is_named(monkeypatch, value):
    from alphavil.runtime.seeding import configure_threads

    monkeypatch.setenv("ALPHAVIL_THREADS", value)
    with pytest.raises(ValueError, match="ALPHAVIL_THREADS: expected a positive integer"):
        configure_threads()
