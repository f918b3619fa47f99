"""params.yaml: loading and validation.

Every stage calls `load_params` before touching data or models, so a bad value stops
the pipeline with a message naming the key and what was expected, before any compute.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Keys an epoch entry may override for that epoch only (see docs/algorithm.md).
EPOCH_OVERRIDE_KEYS = {
    "sample_ratio": ("alphavil", "sample_ratio"),
    "lr": ("train", "lr"),
    "alpha_steps": ("alpha", "steps"),
    "alpha_lr": ("alpha", "lr"),
}

_EPOCH_ID = re.compile(r"^ep\d+$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class ParamsError(ValueError):
    """A params.yaml value is missing or out of range; the message names the key."""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    label: str
    label_noise: float = 0.0
    dataset: str | None = None  # NLU tasks: which dataset this task reads


@dataclass(frozen=True)
class EpochSpec:
    id: str
    prev: str
    n: int
    overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Params:
    raw: dict
    seeds: list[int]
    target: str
    tasks: dict[str, TaskSpec]
    epochs: list[EpochSpec]
    methods: list[str]  # alphavil first, then params.yaml `baselines`

    def section(self, name: str) -> dict:
        return self.raw[name]

    def epoch(self, epoch_id: str) -> EpochSpec:
        for ep in self.epochs:
            if ep.id == epoch_id:
                return ep
        raise ParamsError(f"params.yaml: epochs has no entry with id {epoch_id!r} "
                          f"(ids: {[e.id for e in self.epochs]})")

    def for_epoch(self, epoch_id: str) -> dict:
        """The raw params with that epoch's overrides applied."""
        merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.raw.items()}
        for key, value in self.epoch(epoch_id).overrides.items():
            section, sub = EPOCH_OVERRIDE_KEYS[key]
            merged[section][sub] = value
        return merged


class _Checker:
    """Collects every problem so one run reports all of them, not just the first."""

    def __init__(self, raw: dict, source: str):
        self.raw = raw
        self.source = source
        self.errors: list[str] = []

    def fail(self, key: str, expected: str, got: Any = None, show_got: bool = True) -> None:
        msg = f"{key}: expected {expected}"
        if show_got:
            msg += f", got {got!r}"
        self.errors.append(msg)

    def get(self, key: str, default: Any = ...) -> Any:
        node: Any = self.raw
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is ...:
                    self.errors.append(f"{key}: missing (required)")
                    return None
                return default
            node = node[part]
        return node

    def number(self, key: str, *, default: Any = ..., **bounds: Any) -> Any:
        value = self.get(key, default)
        if value is None:
            return None
        return self.check_number(key, value, **bounds)

    def check_number(self, key: str, value: Any, *, low: float | None = None,
                     high: float | None = None, low_open: bool = False,
                     integer: bool = False) -> Any:
        kind = "an integer" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                integer and not isinstance(value, int)):
            self.fail(key, kind, value)
            return None
        if not math.isfinite(value):
            self.fail(key, f"a finite {kind[2:] if integer else 'number'}", value)
            return None
        if low is not None and (value < low or (low_open and value == low)):
            bound = f"> {low}" if low_open else f">= {low}"
            rng = bound if high is None else (
                f"in ({low}, {high}]" if low_open else f"in [{low}, {high}]")
            self.fail(key, f"{kind} {rng}", value)
            return None
        if high is not None and value > high:
            rng = f"in ({low}, {high}]" if low_open else f"in [{low}, {high}]"
            self.fail(key, f"{kind} {rng}", value)
            return None
        return value

    def choice(self, key: str, options, default: Any = ...) -> Any:
        value = self.get(key, default)
        if value is None:
            return None
        if value not in options:
            self.fail(key, f"one of {sorted(options)}", value)
            return None
        return value

    def mapping(self, key: str, default: Any = ...) -> dict | None:
        value = self.get(key, default)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.fail(key, "a mapping", value)
            return None
        return value


def _named_tasks(c: _Checker) -> list[tuple[str, Any]]:
    """The `tasks` entries whose names are valid, in order (both settings name tasks alike);
    bad names and an empty or missing mapping are reported on c."""
    tasks_raw = c.mapping("tasks")
    if tasks_raw is None:
        return []
    if not tasks_raw:
        c.fail("tasks", "at least one task", tasks_raw)
    named = []
    for name, spec in tasks_raw.items():
        if not isinstance(name, str) or not _NAME.match(name):
            c.fail("tasks", "task names made of letters, digits and '_', starting with a letter",
                   name)
            continue
        named.append((name, spec))
    return named


def _check_tasks(c: _Checker) -> dict[str, TaskSpec]:
    from .tasks import TASK_LABELS  # one registry of task kinds

    tasks: dict[str, TaskSpec] = {}
    for name, spec in _named_tasks(c):
        key = f"tasks.{name}"
        if not isinstance(spec, dict):
            c.fail(key, "a mapping with 'label' (and optionally 'label_noise')", spec)
            continue
        unknown = set(spec) - {"label", "label_noise", "dataset"}
        if unknown:
            c.fail(key, "only the keys label, label_noise, dataset", sorted(unknown))
        label = c.choice(f"{key}.label", TASK_LABELS)
        noise = c.number(f"{key}.label_noise", low=0.0, high=1.0, default=0.0)
        dataset = spec.get("dataset")
        if label is not None and noise is not None:
            tasks[name] = TaskSpec(name=name, label=label, label_noise=float(noise),
                                   dataset=dataset)
    return tasks


def _check_nlu_tasks(c: _Checker) -> dict[str, TaskSpec]:
    """NLU tasks name a text source (and its label view); alphavil/nlu/sources.py."""
    from .nlu.sources import check_task

    tasks: dict[str, TaskSpec] = {}
    for name, spec in _named_tasks(c):
        found = check_task(c, f"tasks.{name}", spec)
        if found is not None:
            source, view = found
            tasks[name] = TaskSpec(name=name, label=view,
                                   label_noise=float(spec.get("label_noise", 0.0) or 0.0),
                                   dataset=source)
    return tasks


def _check_nlu(c: _Checker) -> None:
    from .nlu.model import POOLINGS

    c.mapping("data")
    c.number("data.seed", low=0, integer=True)
    tok = c.get("data.tokenizer")
    if tok is not None and not isinstance(tok, str):
        c.fail("data.tokenizer", "an encoder name or folder (the same as model.encoder)", tok)
    c.number("data.max_length", low=8, high=512, integer=True)
    for n in ("n_train", "n_dev", "n_test"):
        c.number(f"data.{n}", low=1, integer=True)
    if c.get("model.kind", None) != "transformer":
        c.fail("model.kind", "'transformer' for setting: nlu", c.get("model.kind", None))
    enc = c.get("model.encoder")
    if enc is not None and not isinstance(enc, str):
        c.fail("model.encoder", "a shipped encoder name, a folder or a hub name", enc)
    if isinstance(tok, str) and isinstance(enc, str) and tok != enc:
        c.fail("data.tokenizer", f"the same as model.encoder ({enc!r}): the prepared token ids "
               "must match the encoder's vocabulary", tok)
    c.choice("model.init", {"pretrained", "random"}, default="pretrained")
    c.choice("model.pooling", POOLINGS, default="mean")
    if c.get("model.train_layers", None) is not None:
        c.number("model.train_layers", low=0, integer=True)
    fe = c.get("model.freeze_embeddings", False)
    if not isinstance(fe, bool):
        c.fail("model.freeze_embeddings", "true or false", fe)
    if c.get("model.dropout", None) is not None:
        c.number("model.dropout", low=0.0, high=0.9)
    if c.mapping("model.lora", default=None) is not None:  # null: no adapters
        unknown = set(c.get("model.lora")) - {"rank", "alpha", "dropout", "targets"}
        if unknown:
            c.fail("model.lora", "only the keys rank, alpha, dropout, targets", sorted(unknown))
        c.number("model.lora.rank", low=1, integer=True)
        c.number("model.lora.alpha", low=0.0, low_open=True)
        c.number("model.lora.dropout", low=0.0, high=0.9, default=0.0)
        targets = c.get("model.lora.targets")
        if targets is not None and (not isinstance(targets, list) or not targets or not all(
                isinstance(t, str) and t for t in targets)):
            c.fail("model.lora.targets", "a non-empty list of module names (e.g. [query, "
                   "value])", targets)
        if c.get("model.train_layers", None) == 0:
            c.fail("model.train_layers", "null or >= 1 with model.lora (the layers that get "
                   "adapters)", 0)


def _check_epochs(c: _Checker) -> list[EpochSpec]:
    raw = c.get("epochs")
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw:
        c.fail("epochs", "a non-empty list of {id, prev, n, overrides} entries "
               "(rewrite it with `python -m alphavil.schedule N`)", raw)
        return []
    epochs: list[EpochSpec] = []
    prev = "base"
    for i, entry in enumerate(raw):
        key = f"epochs[{i}]"
        if not isinstance(entry, dict):
            c.fail(key, "a mapping {id, prev, n, overrides}", entry)
            return []
        expected = {"id": f"ep{i}", "prev": prev, "n": i + 1}
        for k, v in expected.items():
            if entry.get(k) != v:
                c.fail(f"{key}.{k}", f"{v!r} (epochs form a chain ep0 <- base, ep1 <- ep0, ...; "
                       "rewrite with `python -m alphavil.schedule N`)", entry.get(k))
        overrides = entry.get("overrides", {})
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, dict):
            c.fail(f"{key}.overrides", "a mapping (may be empty: {})", overrides)
            overrides = {}
        for ok, ov in overrides.items():
            if ok not in EPOCH_OVERRIDE_KEYS:
                c.errors.append(f"{key}.overrides: unknown key {ok!r}; expected one of "
                                f"{sorted(EPOCH_OVERRIDE_KEYS)}")
        unknown = set(entry) - {"id", "prev", "n", "overrides"}
        if unknown:
            c.fail(key, "only the keys id, prev, n, overrides", sorted(unknown))
        epochs.append(EpochSpec(id=f"ep{i}", prev=prev, n=i + 1, overrides=dict(overrides)))
        prev = f"ep{i}"
    return epochs


def _check_overrides_ranges(c: _Checker, epochs: list[EpochSpec]) -> None:
    ranges = {
        "sample_ratio": dict(low=0.0, high=1.0, low_open=True),
        "lr": dict(low=0.0, low_open=True),
        "alpha_steps": dict(low=0, integer=True),
        "alpha_lr": dict(low=0.0, low_open=True),
    }
    for i, ep in enumerate(epochs):
        for k, v in ep.overrides.items():
            if k in ranges:
                c.check_number(f"epochs[{i}].overrides.{k}", v, **ranges[k])


def validate(raw: Any, source: str = "params.yaml") -> Params:
    """Check every key the pipeline reads; raise ParamsError listing all problems."""
    from .digits import DIGIT_SOURCES
    from .methods import METHODS
    from .models import MODEL_KINDS

    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    c = _Checker(raw, source)

    seeds = c.get("seeds")
    if seeds is not None:
        if (not isinstance(seeds, list) or not seeds
                or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds)):
            c.fail("seeds", "a non-empty list of non-negative integers", seeds)
            seeds = None
        elif len(set(seeds)) != len(seeds):
            c.fail("seeds", "no repeated seed", seeds)
            seeds = None

    setting = c.choice("setting", {"vision", "nlu"}, default="vision")
    tasks = _check_nlu_tasks(c) if setting == "nlu" else _check_tasks(c)
    target = c.get("target")
    if target is not None and tasks and target not in tasks:
        c.fail("target", f"one of the task names {list(tasks)}", target)

    if setting == "nlu":
        _check_nlu(c)
    elif setting == "vision":
        c.mapping("data")
        c.choice("data.source", DIGIT_SOURCES)
        c.mapping("data.source_args", default={})
        c.number("data.seed", low=0, integer=True)
        for split in ("train", "dev", "test"):
            c.number(f"data.digit_split.{split}", low=0.0, high=1.0, low_open=True)
        fr = c.get("data.digit_split", default=None)
        if isinstance(fr, dict) and all(isinstance(fr.get(s), (int, float)) for s in
                                        ("train", "dev", "test")):
            if sum(fr[s] for s in ("train", "dev", "test")) > 1.0 + 1e-9:
                c.fail("data.digit_split", "fractions summing to at most 1", fr)
        for n in ("n_train", "n_dev", "n_test"):
            c.number(f"data.{n}", low=1, integer=True)
        canvas = c.number("data.canvas", low=28, integer=True)
        c.number("data.image_size", low=8, integer=True)
        jitter = c.number("data.jitter", low=0, integer=True)
        if canvas is not None and jitter is not None and 28 + jitter > canvas:
            c.fail("data.jitter", f"at most data.canvas - 28 = {canvas - 28}", jitter)

    c.mapping("model")
    c.choice("model.kind", MODEL_KINDS)

    c.choice("train.optimizer", {"sgd", "adam", "adamw"})
    from .device import DEVICES, PRECISIONS
    c.choice("train.device", DEVICES, default="cpu")
    c.choice("train.precision", PRECISIONS, default="fp32")
    c.number("train.lr", low=0.0, low_open=True)
    c.number("train.batch_size", low=1, integer=True)
    c.number("base.warmup_steps", low=0, integer=True)

    c.number("alphavil.sample_ratio", low=0.0, high=1.0, low_open=True)
    from .core import WEIGHT_RULES
    c.choice("alphavil.weight_rule", WEIGHT_RULES)
    from .core import WEIGHT_MODES
    mode = c.choice("alphavil.weight_mode", WEIGHT_MODES, default="step")
    floor = c.number("alphavil.weight_floor", default=None)
    if mode == "step" and c.get("alphavil.weight_floor", None) is None:
        c.fail("alphavil.weight_floor", "a number >= 0 with weight_mode 'step' (a negative "
               "weight would be a negative step size, i.e. gradient ascent)", None)
    elif mode == "step" and floor is not None and floor < 0:
        c.fail("alphavil.weight_floor", "a number >= 0 with weight_mode 'step' (a negative "
               "weight would be a negative step size, i.e. gradient ascent)", floor)
    c.choice("alphavil.delta_dtype", {"float64", "float32", "bfloat16"}, default="float32")

    c.number("alpha.init", default=1.0)
    c.number("alpha.steps", low=0, integer=True)
    c.number("alpha.lr", low=0.0, low_open=True)
    c.choice("alpha.optimizer", {"sgd", "adam"})
    c.number("alpha.batch_size", low=1, integer=True)
    guard = c.get("alpha.guard", False)
    if not isinstance(guard, bool):
        c.fail("alpha.guard", "true or false", guard)

    # KMM needs B >= 1: weights in [0, B] with mean 1
    c.number("diw.max_weight", low=1.0, default=10.0)
    c.number("diw.iterations", low=1, integer=True, default=100)
    c.number("diw.max_examples", low=2, integer=True, default=4000)  # exact KMM up to this

    baselines = c.get("baselines")
    if baselines is not None:
        options = sorted(m for m, cls in METHODS.items() if not cls.staged)
        if not isinstance(baselines, list) or not baselines:
            c.fail("baselines", f"a non-empty list of method names from {options}", baselines)
            baselines = None
        else:
            for m in baselines:
                if m not in options:
                    c.fail("baselines", f"names from {options}", m)
            if len(set(map(str, baselines))) != len(baselines):
                c.fail("baselines", "no repeated method", baselines)

    epochs = _check_epochs(c)
    _check_overrides_ranges(c, epochs)

    if c.errors:
        lines = "\n  - ".join(c.errors)
        raise ParamsError(f"{source} is invalid:\n  - {lines}")
    return Params(raw=raw, seeds=list(seeds), target=target, tasks=tasks, epochs=epochs,
                  methods=["alphavil"] + list(baselines))


def _duplicate_keys(node: yaml.Node, path: str = "") -> list[str]:
    """yaml.safe_load keeps the last of two equal keys without a word, so a task or a
    section written twice would silently lose the first one; find them in the node tree."""
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            dotted = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(f"{dotted}: expected each key once in a mapping, "
                                f"got it twice (lines {seen[key]} and {line})")
            seen.setdefault(key, line)
            problems += _duplicate_keys(value_node, dotted)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _duplicate_keys(item, f"{path}[{i}]")
    return problems


def parse_yaml(text: str, source: str = "params.yaml") -> Any:
    try:
        problems = _duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader))
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ParamsError(f"{source}: not valid YAML: {err}") from None
    if problems:
        lines = "\n  - ".join(problems)
        raise ParamsError(f"{source} is invalid:\n  - {lines}")
    return raw


def check_data_source(params: Params) -> None:
    """Files the prepare stage reads must exist before it starts. Only prepare calls
    this: later stages read data/prepared, which a teammate may have pulled from a
    remote without having the source files."""
    d = params.raw.get("data") or {}
    if d.get("source") != "mnist_idx":
        return
    from .digits import INSTALLED_BY

    path = (d.get("source_args") or {}).get("path")
    fix = INSTALLED_BY.get(str(Path(path))) if path else None
    fix = f"; `{fix}` installs it" if fix else ""
    if not path or not Path(path).is_dir():
        raise ParamsError(f"data.source_args.path: expected an existing folder with "
                          f"train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] "
                          f"(data.source is mnist_idx), got {path!r}{fix}")
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        if not any((Path(path) / f"{stem}{ext}").is_file() for ext in ("", ".gz")):
            raise ParamsError(f"data.source_args.path: expected {stem}[.gz] in {path!r}, "
                              f"not found{fix}")


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: file not found (run from the repository root)")
    return validate(parse_yaml(path.read_text(), str(path)), str(path))
