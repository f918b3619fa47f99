"""A battery of bad params.yaml files, each run through a real stage script: every one must
stop with exit code 2 and one `error:` line per problem that names the key and what was
expected, with no traceback, nothing written, and before torch is imported (each run sees
a `torch` that refuses to import: validation must not need it)."""

import copy
import os
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest
import yaml

from testkit.params import ROOT, committed_params_text
from needs import needs_module

STAGES = [  # every stage script validates params.yaml first; the cases take turns
    ["check_params.py"],
    ["prepare.py"],
    ["train_base.py", "--seed", "0"],
    ["finetune.py", "--seed", "0", "--epoch", "ep0", "--task", "left"],
    ["estimate_alpha.py", "--seed", "0", "--epoch", "ep0"],
    ["merge.py", "--seed", "0", "--epoch", "ep1"],
    ["train_method.py", "--method", "uniform", "--seed", "0"],
    ["evaluate.py"],
]


@dataclass(frozen=True)
class Sub:
    """Edit the text of params.yaml (what YAML itself makes of it is the point)."""
    old: str
    new: str


@dataclass(frozen=True)
class Raw:
    """Replace the whole file."""
    content: bytes


_DELETE = object()
HUGE = 10**12  # images: beyond any machine's memory at 28x28 pixels

# (key to set, value, key the message must name, text the message must also hold, lines);
# a key "nlu:..." edits params.yaml overlaid with configs/nlu.yaml.
CASES = [
    # unknown keys, in every section and at the top level, with the nearest valid key
    ("alpha.gaurd", True, "alpha.gaurd", "did you mean alpha.guard?", 1),
    ("learning_rate", 0.1, "learning_rate", "unknown key", 1),
    ("lr", 0.1, "lr", "did you mean train.lr or alpha.lr?", 1),
    ("train.lrate", 0.1, "train.lrate", "did you mean train.lr?", 1),
    ("data.n_trian", 100, "data.n_trian", "did you mean data.n_train?", 1),
    ("model.hiden", 32, "model.hiden", "did you mean model.hidden?", 1),
    ("tasks.left.weight", 2.0, "tasks.left.weight", "expected one of label, label_noise", 1),
    ("base.warmup", 5, "base.warmup", "did you mean base.warmup_steps?", 1),
    ("alphavil.weight_rules", "alpha", "alphavil.weight_rules", "did you mean", 1),
    ("diw.max_weights", 5.0, "diw.max_weights", "did you mean diw.max_weight?", 1),
    ("data.digit_split.trian", 0.5, "data.digit_split.trian", "did you mean", 1),
    ("epochs[0].overides", {}, "epochs[0].overides", "did you mean epochs[0].overrides?", 1),
    ("epochs[1].overrides", {"learning_rate": 0.1}, "epochs[1].overrides.learning_rate",
     "expected one of sample_ratio, lr, alpha_steps, alpha_lr", 1),
    # each data source's own source_args; no silent default dataset
    ("data.source_args", {"nmae": "ylecun/mnist"}, "data.source_args", "takes no arguments", 1),
    ("data", {"source": "hf", "source_args": {"nmae": "ylecun/mnist"}},
     "data.source_args.name", "did you mean data.source_args.name?", 2),
    ("data", {"source": "hf", "source_args": {}}, "data.source_args.name", "missing", 1),
    ("data", {"source": "hf", "source_args": {"name": "x", "revision": 3}},
     "data.source_args.revision", "a string", 1),
    ("data", {"source": "mnist_idx", "source_args": {"path": ".", "pth": "."}},
     "data.source_args.pth", "did you mean data.source_args.path?", 1),
    # the CNN's shape
    ("model.channels", [], "model.channels", "a non-empty list of integers >= 1", 1),
    ("model.channels", [16, 0], "model.channels", "integers >= 1", 1),
    ("model.channels", "16,32", "model.channels", "a non-empty list", 1),
    ("model.channels", [4] * 6, "model.channels", "at most 4 layers for data.image_size 28", 1),
    ("model.hidden", 0, "model.hidden", "an integer >= 1", 1),
    ("model.hidden", 2.5, "model.hidden", "an integer", 1),
    # sizes that cannot fit in memory, refused with an estimate
    (None, Sub("n_train: 3000", "n_train: 1e9"), "data.n_train", "YAML reads 1e9 as text", 1),
    ("data.n_train", HUGE, "data.n_train", "GiB", 1),
    ("data.image_size", 100000, "data.image_size", "GiB", 1),
    ("data.canvas", 10**6, "data.canvas", "GiB", 1),
    # seeds torch cannot take, lists where one value belongs
    ("seeds", [2**64], "seeds", "[0, 2**64 - 1]", 1),
    ("seeds", [-1], "seeds", "[0, 2**64 - 1]", 1),
    ("data.seed", 2**64, "data.seed", "an integer in [0, ", 1),
    ("target", ["left"], "target", "a task name", 1),
    ("setting", ["vision"], "setting", "one of ['images', 'nlu', 'vision']", 1),
    ("alpha.optimizer", ["adam"], "alpha.optimizer", "one of ['adam', 'sgd']", 1),
    ("alpha.guard", "yes", "alpha.guard", "true or false", 1),
    ("alpha.split", "half", "alpha.split", "one of ['dev', 'dev_half']", 1),
    ("train.device", "gpu", "train.device", "one of ['auto', 'cpu', 'cuda']", 1),
    ("train.precision", "fp16", "train.precision", "one of ['bf16', 'fp32']", 1),
    ("alphavil.weight_mode", "steps", "alphavil.weight_mode", "did you mean step?", 1),
    ("joint.schedule", "round-robin", "joint.schedule", "did you mean round_robin?", 1),
    ("joint.schedule", "random", "joint.schedule",
     "one of ['each_step', 'round_robin', 'spread']", 1),
    ("forkmerge.variant", "publish", "forkmerge.variant", "did you mean published?", 1),
    ("forkmerge.top_k", [0, 1], "forkmerge.top_k", "null unless variant is 'published'", 1),
    ("baselines", ["unifrom"], "baselines", "did you mean uniform?", 1),
    ("report.rank_by", "alpha", "report.rank_by", "one of ['cumulative_alpha', 'weight']", 1),
    ("report.rank_by", "cumulative_alphas", "report.rank_by", "did you mean cumulative_alpha?", 1),
    # per-task knobs of the ground-truth suites (alphavil/tasks.py)
    ("tasks.right.role", "helpfull", "tasks.right.role", "did you mean helpful?", 1),
    ("tasks.right.inputs", "shuffled", "tasks.right.inputs",
     "one of ['fashion', 'permuted', 'shared']", 1),
    ("tasks.left.n_train", 0, "tasks.left.n_train", "an integer >= 1", 1),
    ("tasks.left.n_train", HUGE, "tasks.left.n_train", "fit this machine's memory", 1),
    # the file itself
    (None, Raw(b"seeds: [0]\ntarget: l\xe9ft\n"), "params.yaml", "expected UTF-8 text", 1),
    (None, Sub("seeds: [0, 1, 2, 3, 4]", "seeds: [0, 1"), "params.yaml",
     "not valid YAML at line", 1),
    (None, Sub("base:", "train:\n  lr: 0.5\nbase:"), "train", "expected each key once", 1),
    (None, Raw(b"- 1\n- 2\n"), "params.yaml", "expected a mapping at the top level", 1),
    # the NLU setting
    ("nlu:data.tokenizr", "x", "data.tokenizr", "did you mean data.tokenizer?", 1),
    ("nlu:tasks.entail.sorce", "snli", "tasks.entail.sorce", "did you mean tasks.entail.source?",
     1),
    ("nlu:tasks.glue_rte", {"source": "glue", "name": "rte", "revision": 3},
     "tasks.glue_rte.revision", "a hub revision", 1),
    ("nlu:model", {"encoder_revision": "main"}, "model.encoder_revision",
     "expected null for the shipped encoder", 2),  # and data.tokenizer_revision differs
    ("nlu:model.poolng", "cls", "model.poolng", "did you mean model.pooling?", 1),
    ("nlu:model.kind", "cnn", "model.kind", "with setting nlu", 1),
    ("nlu:tasks.h", {"source": "hf", "name": "csv", "text": ["t"], "splits": {"tset": "x"}},
     "tasks.h.splits.tset", "did you mean tasks.h.splits.test?", 1),
    # the images setting (your own image data sets: docs/own-tasks.md)
    ("images:tasks.digits.sorce", "files", "tasks.digits.sorce",
     "did you mean tasks.digits.source?", 1),
    ("images:tasks.digits.source", "folders", "tasks.digits.source", "did you mean folder?", 1),
    ("images:tasks.h", {"source": "hf", "name": "x", "image_col": "img"}, "tasks.h.image_col",
     "did you mean tasks.h.image?", 1),
    ("images:tasks.h", {"source": "hf", "name": "x", "revision": 3}, "tasks.h.revision",
     "a hub revision", 1),
    ("images:tasks.garment.classes", {"top": ["t-shirt"]}, "tasks.garment.classes",
     "at least two class names", 1),
    ("images:tasks.garment.classes", {"top": [], "bottom": ["trouser"]},
     "tasks.garment.classes.top", "a non-empty list of labels", 1),
    ("images:data.channels", 2, "data.channels", "1 (grey) or 3 (RGB)", 1),
    ("images:data.normalise", "imagenet", "data.normalise", "one of ['dataset', 'unit']", 1),
    ("images:data.fit", "pad", "data.fit", "one of ['crop', 'stretch']", 1),
    ("images:model.kind", "transformer", "model.kind", "with setting images", 1),
    ("images:model.blocks", 2, "model.blocks", "1 with model.kind cnn", 1),
]


def _set(raw, dotted, value):
    node = raw
    *parents, last = dotted.split(".")
    for k in parents:
        m = re.fullmatch(r"(\w+)\[(\d+)\]", k)
        node = node[m[1]][int(m[2])] if m else node[k]
    m = re.fullmatch(r"(\w+)\[(\d+)\]", last)
    if m:
        node[m[1]][int(m[2])] = value
    elif isinstance(value, dict) and isinstance(node.get(last), dict) and last in (
            "data", "model"):
        node[last].update(value)  # a few keys of a section together
    else:
        node[last] = value


def _params_file(key, value) -> bytes:
    text = committed_params_text()
    if isinstance(value, Raw):
        return value.content
    if isinstance(value, Sub):
        assert value.old in text
        return text.replace(value.old, value.new, 1).encode()
    raw = yaml.safe_load(text)
    for setting, overlay in (("nlu:", "nlu.yaml"), ("images:", "own-images.yaml")):
        if key.startswith(setting):
            key = key[len(setting):]
            raw.update(yaml.safe_load((ROOT / "configs" / overlay).read_text()))
    raw = copy.deepcopy(raw)
    _set(raw, key, value)
    return yaml.safe_dump(raw, sort_keys=False).encode()


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory):
    """A PYTHONPATH entry whose `torch` cannot be imported."""
    folder = tmp_path_factory.mktemp("no_torch")
    (folder / "torch").mkdir()
    (folder / "torch" / "__init__.py").write_text(
        "raise ImportError('torch was imported before params.yaml was validated')\n")
    return folder


@pytest.mark.parametrize("i,case", list(enumerate(CASES)),
                         ids=[f"{c[0] or c[2]}={c[1]!r}"[:60] for c in CASES])
def test_bad_params_stop_every_stage_with_one_line_per_problem(tmp_path, no_torch, i, case):
    key, value, named, also, n_lines = case
    (tmp_path / "params.yaml").write_bytes(_params_file(key, value))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(no_torch), str(ROOT)])}
    stage = STAGES[i % len(STAGES)]
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / stage[0]), *stage[1:]],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    err = proc.stderr
    assert proc.returncode == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == n_lines and all(line.startswith("error: ") for line in lines), err
    assert re.search(rf"(^|\s){re.escape(named)}(:|\s)", err), err
    assert "expected" in err and also in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written


def test_the_battery_is_large_and_covers_every_stage_script():
    assert len(CASES) >= 30
    assert {s[0] for s in STAGES} == {p.name for p in (ROOT / "stages").glob("*.py")}


# --- user errors found after validation: still one line, no traceback -----------------

def _run_stage(folder, script, *args):
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / script), *args], cwd=folder,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_unknown_method_argument_is_one_line(tmp_path):
    from testkit.params import tiny_raw

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_raw()))
    line = _run_stage(tmp_path, "train_method.py", "--method", "mgda", "--seed", "0")
    assert line == ("error: --method 'mgda': expected one of the baselines "
                    "['diw', 'forkmerge', 'gcs', 'single_task', 'uniform']")


def test_missing_nlu_text_source_is_one_line(tmp_path):
    needs_module("transformers")
    from testkit.nlu import make_tiny_encoder, nlu_raw

    raw = nlu_raw(tmp_path, make_tiny_encoder(tmp_path / "enc"))
    raw["tasks"]["sentiment"]["path"] = str(tmp_path / "absent.csv.bz2")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    line = _run_stage(tmp_path, "prepare.py")
    assert line.startswith(f"error: tasks.sentiment.path: {tmp_path / 'absent.csv.bz2'} does "
                           "not exist"), line
    assert not (tmp_path / "data").exists()
