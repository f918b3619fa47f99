"""params.yaml: its schema, loading and validation.

Every stage validates params.yaml before it imports torch or touches data (alphavil/cli.py),
so a bad value stops the pipeline within a second, one line per problem, each naming the
key and what was expected. Every mapping is closed: a key the schema does not know (a typo
such as `alpha.gaurd`) is refused with the nearest valid key, never ignored.

The schema is a table of rules per section (TRAIN, ALPHA, ... below) plus the checks that
relate keys to each other in `validate`. It is hand-written rather than a pydantic model:
most of what can go wrong depends on another key (the setting picks the data, model and
task schemas, data.source picks its source_args, the epoch chain, tokenizer = encoder,
sizes that fit in memory), and one small rule set keeps every message in the same
`key: expected ..., got ...` form.
"""

from __future__ import annotations

import difflib
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

# Names of registries that live in torch modules, repeated here so that validating
# params.yaml never imports torch (seconds of start-up per stage); tests/test_config.py
# checks each against its registry.
OPTIMIZERS = ("sgd", "adam", "adamw")               # alphavil/optim.py make_optimizer
DEVICES = ("cpu", "cuda", "auto")                   # alphavil/device.py DEVICES
PRECISIONS = ("fp32", "bf16")                       # alphavil/device.py PRECISIONS
# alphavil/methods METHODS, all but alphavil
BASELINES = ("single_task", "uniform", "diw", "forkmerge", "gcs")
MODEL_KIND = {"vision": "cnn", "nlu": "transformer"}  # alphavil/models.py MODEL_KINDS
# model.heads (vision): "task", one classifier head per task (the paper's model); "label",
# one per label kind, shared by the tasks that read the same classes (alphavil/models.py)
HEAD_SHARING = ("task", "label")
# alpha.combine: θ + Σ α_k δ_k (sum, the paper) or θ + (1/K) Σ α_k δ_k (mean; alphavil/core.py)
COMBINES = ("sum", "mean")
WEIGHT_RULES = ("additive", "alpha")                # alphavil/core.py
WEIGHT_MODES = ("step", "loss")                     # alphavil/core.py
DELTA_DTYPES = ("float64", "float32", "bfloat16")   # alphavil/core.py
POOLINGS = ("mean", "cls", "pooler")                # alphavil/nlu/model.py
SETTINGS = ("vision", "nlu")
BUDGET_MATCHES = ("epochs", "compute")              # alphavil/budget.py
# train.on_divergence: what a baseline whose loss turns NaN/inf does (alphavil/pipeline.py)
ON_DIVERGENCE = ("stop", "mark")

INT64_MAX = 2**63 - 1
SEED_MAX = 2**64 - 1  # torch.manual_seed's upper limit

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class ParamsError(ValueError):
    """A setting is wrong: a params.yaml value, a stage argument or an ALPHAVIL_* variable.
    The message has one line per problem, each naming the key."""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    label: str
    label_noise: float = 0.0
    dataset: str | None = None  # NLU tasks: which dataset this task reads
    # vision tasks (alphavil/tasks.py): own training size (None: data.n_train), images, role
    n_train: int | None = None
    inputs: str = "shared"
    role: str | None = None


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


# --- rules: each checks one value, reports what is wrong and returns it or BAD ---------

REQUIRED = object()  # a rule's default when the key must be given
BAD = object()       # what a check returns once it has reported the value


@dataclass(frozen=True, kw_only=True)
class Rule:
    default: Any = REQUIRED  # the value of a key left out; REQUIRED: it must be given
    nullable: bool = False   # null is a valid value (what it means is documented per key)

    def expected(self) -> str:
        raise NotImplementedError

    def check(self, c: "_Checker", key: str, value: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Num(Rule):
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    integer: bool = False

    def expected(self) -> str:
        kind = "an integer" if self.integer else "a number"
        lo = "(" if self.low_open else "["
        if self.low is not None and self.high is not None:
            return f"{kind} in {lo}{self.low}, {self.high}]"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low}"
        if self.high is not None:
            return f"{kind} <= {self.high}"
        return kind

    def check(self, c, key, value):
        kind = "an integer" if self.integer else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                self.integer and not isinstance(value, int)):
            hint = ""
            if isinstance(value, str) and _looks_numeric(value):
                hint = " (YAML reads 1e9 as text: write 1.0e+9 or the digits)"
            return c.fail(key, self.expected() + hint, value)
        if isinstance(value, float) and not math.isfinite(value):
            return c.fail(key, f"a finite {kind[2:] if self.integer else 'number'}", value)
        if isinstance(value, int) and abs(value) > INT64_MAX and self.high is None:
            return c.fail(key, f"{self.expected()} that fits 64 bits (< 2**63)", value)
        if (self.low is not None and (value < self.low or (self.low_open and value == self.low))
                or self.high is not None and value > self.high):
            return c.fail(key, self.expected(), value)
        return value


def Int(low: int | None = None, high: int | None = None, **kw: Any) -> Num:
    return Num(low, high, integer=True, **kw)


@dataclass(frozen=True)
class OneOf(Rule):
    options: tuple
    note: str = ""  # why only these, e.g. "with setting nlu"

    def expected(self) -> str:
        return f"one of {sorted(self.options)}{self.note}"

    def check(self, c, key, value):
        if isinstance(value, str) and value in self.options:
            return value
        return c.fail(key, self.expected() + _did_you_mean(value, self.options), value)


@dataclass(frozen=True)
class Is(Rule):
    """A value of one type: Is(bool, "true or false"), Is(str, "a hub name"), Is(dict, ...)."""
    type: type
    what: str

    def expected(self) -> str:
        return self.what

    def check(self, c, key, value):
        if isinstance(value, self.type) and value != "":
            return value
        return c.fail(key, self.what, value)


@dataclass(frozen=True)
class IntList(Rule):
    low: int = 1

    def expected(self) -> str:
        return f"a non-empty list of integers >= {self.low}"

    def check(self, c, key, value):
        if (isinstance(value, list) and value and all(
                isinstance(v, int) and not isinstance(v, bool) and self.low <= v <= INT64_MAX
                for v in value)):
            return value
        return c.fail(key, self.expected(), value)


@dataclass(frozen=True)
class StrList(Rule):
    what: str

    def expected(self) -> str:
        return self.what

    def check(self, c, key, value):
        if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
            return value
        return c.fail(key, self.what, value)


@dataclass(frozen=True)
class Fractions(Rule):
    def expected(self) -> str:
        return "a non-empty list of distinct numbers in [0, 1]"

    def check(self, c, key, value):
        if (isinstance(value, list) and value and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
                for v in value) and len(set(value)) == len(value)):  # numbers: hashable
            return value
        return c.fail(key, self.expected(), value)


@dataclass(frozen=True)
class Section(Rule):
    """A closed mapping: its keys are exactly the schema's (optional ones may be left out)."""
    schema: dict

    def expected(self) -> str:
        return f"a mapping with keys {', '.join(self.schema)}"

    def check(self, c, key, value):
        if not isinstance(value, dict):
            return c.fail(key, self.expected(), value)
        return c.section(key, value, self.schema)


@dataclass(frozen=True)
class Unchecked(Rule):
    """A section whose schema is unknown because `setting` is invalid."""

    def check(self, c, key, value):
        return BAD


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _did_you_mean(value: Any, options, prefix: str = "") -> str:
    if not isinstance(value, str):
        return ""
    options = [str(o) for o in options]
    # a close spelling, else a valid name that starts the given one (lrate -> lr)
    near = difflib.get_close_matches(value, options, n=1) or [
        o for o in options if len(o) > 1 and value.startswith(o)][:1]
    return f" (did you mean {prefix}{near[0]}?)" if near else ""


# --- the schema -----------------------------------------------------------------------

SEED = Int(0, SEED_MAX)
TRAIN = {
    "optimizer": OneOf(OPTIMIZERS),
    "lr": Num(0.0, low_open=True),
    "batch_size": Int(1),
    "device": OneOf(DEVICES, default="cpu"),
    "precision": OneOf(PRECISIONS, default="fp32"),
    "on_divergence": OneOf(ON_DIVERGENCE, default="stop"),
}
BASE = {"warmup_steps": Int(0)}
ALPHAVIL = {
    "sample_ratio": Num(0.0, 1.0, low_open=True),
    "weight_mode": OneOf(WEIGHT_MODES, default="step"),
    "weight_rule": OneOf(WEIGHT_RULES),
    # required (>= 0) with weight_mode step: checked in validate
    "weight_floor": Num(default=None, nullable=True),
    "delta_dtype": OneOf(DELTA_DTYPES, default="float32"),
}
ALPHA = {
    "init": Num(default=1.0),
    "steps": Int(0),
    "lr": Num(0.0, low_open=True),
    "optimizer": OneOf(("sgd", "adam")),
    "batch_size": Int(1),
    "guard": Is(bool, "true or false", default=False),
    "combine": OneOf(COMBINES, default="sum"),
}
# KMM needs B >= 1: weights in [0, B] with mean 1
DIW = {"max_weight": Num(1.0, default=10.0), "iterations": Int(1, default=100),
       # exact KMM up to this many examples per auxiliary task (alphavil/methods/diw.py)
       "max_examples": Int(2, default=4000)}
# ForkMerge (alphavil/methods/forkmerge.py). interval: rounds of batches (one batch of each task)
# between fork and merge, null = one fork per epoch; lambdas: the joint branch's merge weights
# tried on the target's dev split (0 = the target-only branch), the paper's grid search.
FORKMERGE = {"interval": Int(1, default=None, nullable=True),
             "lambdas": Fractions(default=[i / 10 for i in range(11)])}
# GCS (alphavil/methods/gcs.py): false adds an auxiliary gradient whose cosine with the
# target's is > 0 (the paper's unweighted variant); true scales it by that cosine.
GCS = {"weighted": Is(bool, "true or false", default=False)}
# What a baseline epoch spends (alphavil/budget.py): one pass over each task's ρ-subset
# (epochs), or as many forward+backward example passes as αVIL plans for the epoch (compute).
BUDGET = {"match": OneOf(BUDGET_MATCHES, default="epochs")}
SPLITS = ("train", "dev", "test")
N_SPLITS = {f"n_{s}": Int(1) for s in SPLITS}


def _vision_tables() -> tuple[dict, dict, dict]:
    from .digits import DIGIT_SOURCES
    from .tasks import ROLES, TASK_INPUTS, TASK_LABELS  # the registries of task kinds

    task = {"label": OneOf(tuple(TASK_LABELS)), "label_noise": Num(0.0, 1.0, default=0.0),
            # null: data.n_train (dev and test sizes are the data section's for every task)
            "n_train": Int(1, default=None, nullable=True),
            "inputs": OneOf(tuple(TASK_INPUTS), default="shared"),
            "role": OneOf(ROLES, default=None, nullable=True)}
    data = {
        "source": OneOf(tuple(DIGIT_SOURCES)),
        "source_args": Is(dict, "a mapping", default={}),  # keys: by data.source, below
        "seed": SEED,
        "digit_split": Section({s: Num(0.0, 1.0, low_open=True) for s in SPLITS}),
        **N_SPLITS,
        "canvas": Int(28),
        "jitter": Int(0),
        "image_size": Int(8),
    }
    model = {
        "kind": OneOf((MODEL_KIND["vision"],), note=" with setting vision"),
        "channels": IntList(default=[16, 32]),
        "hidden": Int(1, default=64),
        "heads": OneOf(HEAD_SHARING, default="task"),
    }
    return task, data, model


ENCODER = "an encoder name: shipped, a folder or a hub name"
NLU_DATA = {
    "seed": SEED,
    "tokenizer": Is(str, f"{ENCODER} (the same as model.encoder)"),
    "tokenizer_revision": Is(str, "a hub revision (the same as model.encoder_revision)",
                             default=None, nullable=True),
    "max_length": Int(8, 512),
    **N_SPLITS,
}
NLU_MODEL = {
    "kind": OneOf((MODEL_KIND["nlu"],), note=" with setting nlu"),
    "encoder": Is(str, ENCODER),
    "encoder_revision": Is(str, "a hub revision: a branch, tag or commit of model.encoder",
                           default=None, nullable=True),
    "init": OneOf(("pretrained", "random"), default="pretrained"),
    "pooling": OneOf(POOLINGS, default="mean"),
    "train_layers": Int(0, default=None, nullable=True),
    "freeze_embeddings": Is(bool, "true or false", default=False),
    "dropout": Num(0.0, 0.9, default=None, nullable=True),
    # LoRA adapters via peft (null: none): only they and the heads train (docs/nlu.md)
    "lora": Section({
        "rank": Int(1),
        "alpha": Num(0.0, low_open=True),
        "dropout": Num(0.0, 0.9, default=0.0),
        "targets": StrList("a non-empty list of module names (e.g. [query, value])"),
    }, default=None, nullable=True),
}


@dataclass(frozen=True)
class Seeds(Rule):
    def expected(self) -> str:
        return "a non-empty list of integers in [0, 2**64 - 1] (torch's seed range)"

    def check(self, c, key, value):
        if (not isinstance(value, list) or not value or any(
                isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= SEED_MAX
                for s in value)):
            return c.fail(key, self.expected(), value)
        if len(set(value)) != len(value):
            return c.fail(key, "no repeated seed", value)
        return list(value)


@dataclass(frozen=True)
class Tasks(Rule):
    """name -> task spec; a vision task's keys are `task`'s, an NLU task's depend on its
    source (alphavil/nlu/sources.py check_task)."""
    setting: str
    task: dict = field(default_factory=dict)

    def expected(self) -> str:
        return "a mapping of task names to task specs"

    def check(self, c, key, value):
        if not isinstance(value, dict):
            return c.fail(key, self.expected(), value)
        if not value:
            return c.fail(key, "at least one task", value)
        tasks: dict[str, TaskSpec] = {}
        for name, spec in value.items():
            if not isinstance(name, str) or not _NAME.match(name):
                c.fail(key, "task names made of letters, digits and '_', starting with a "
                       "letter", name)
                continue
            if self.setting == "nlu":
                from .nlu.sources import check_task

                found = check_task(c, f"{key}.{name}", spec)
                noise = spec.get("label_noise", 0.0) if isinstance(spec, dict) else None
                if found is not None and isinstance(noise, (int, float)):  # else reported
                    tasks[name] = TaskSpec(name=name, label=found[1], dataset=found[0],
                                           label_noise=float(noise), role=spec.get("role"))
                continue
            got = Section(self.task).check(c, f"{key}.{name}", spec)
            if got is not BAD and set(self.task) <= set(got):
                tasks[name] = TaskSpec(name=name, label=got["label"],
                                       label_noise=float(got["label_noise"]),
                                       n_train=got["n_train"], inputs=got["inputs"],
                                       role=got["role"])
        return tasks


@dataclass(frozen=True)
class Baselines(Rule):
    def expected(self) -> str:
        return f"a non-empty list of method names from {sorted(BASELINES)}"

    def check(self, c, key, value):
        if not isinstance(value, list) or not value:
            return c.fail(key, self.expected(), value)
        bad = False
        for m in value:
            if not isinstance(m, str) or m not in BASELINES:
                bad = c.fail(key, f"names from {sorted(BASELINES)}"
                             + _did_you_mean(m, BASELINES), m)
        if len(set(map(str, value))) != len(value):
            bad = c.fail(key, "no repeated method", value)
        return BAD if bad is BAD else list(value)


@dataclass(frozen=True)
class Epochs(Rule):
    """The chain ep0 <- base, ep1 <- ep0, ... that `python -m alphavil.schedule N` writes;
    an entry's overrides are checked with the rule of the key they override."""

    def expected(self) -> str:
        return ("a non-empty list of {id, prev, n, overrides} entries "
                "(rewrite it with `python -m alphavil.schedule N`)")

    def check(self, c, key, value):
        if not isinstance(value, list) or not value:
            return c.fail(key, self.expected(), value)
        epochs: list[EpochSpec] = []
        prev = "base"
        for i, entry in enumerate(value):
            at = f"{key}[{i}]"
            if not isinstance(entry, dict):
                c.fail(at, "a mapping {id, prev, n, overrides}", entry)
                return BAD
            c.unknown(at, entry, ("id", "prev", "n", "overrides"))
            for k, v in {"id": f"ep{i}", "prev": prev, "n": i + 1}.items():
                if entry.get(k) != v or isinstance(entry.get(k), bool):
                    c.fail(f"{at}.{k}", f"{v!r} (epochs form a chain ep0 <- base, ep1 <- ep0, "
                           "...; rewrite with `python -m alphavil.schedule N`)", entry.get(k))
            overrides = entry.get("overrides", {})
            if overrides is None:
                overrides = {}
            elif not isinstance(overrides, dict):
                c.fail(f"{at}.overrides", "a mapping (may be empty: {})", overrides)
                overrides = {}
            c.unknown(f"{at}.overrides", overrides, tuple(EPOCH_OVERRIDE_KEYS))
            for k, v in overrides.items():
                if k in EPOCH_OVERRIDE_KEYS:
                    section, sub = EPOCH_OVERRIDE_KEYS[k]
                    SECTIONS[section][sub].check(c, f"{at}.overrides.{k}", v)
            epochs.append(EpochSpec(id=f"ep{i}", prev=prev, n=i + 1,
                                    overrides={k: v for k, v in overrides.items()
                                               if k in EPOCH_OVERRIDE_KEYS}))
            prev = f"ep{i}"
        return epochs


SECTIONS = {"train": TRAIN, "base": BASE, "alphavil": ALPHAVIL, "alpha": ALPHA, "diw": DIW,
            "forkmerge": FORKMERGE, "gcs": GCS, "budget": BUDGET}


def schema(setting: str | None) -> dict[str, Rule]:
    """The top level for a setting (None: `setting` itself is invalid, so the sections
    that depend on it are not checked)."""
    task, data, model = {}, {}, {}
    if setting == "vision":
        task, data, model = _vision_tables()
    elif setting == "nlu":
        data, model = NLU_DATA, NLU_MODEL
    return {
        "setting": OneOf(SETTINGS, default="vision"),
        "seeds": Seeds(),
        "target": Is(str, "a task name (one of the keys of tasks)"),
        "tasks": Tasks(setting, task) if setting else Unchecked(default=None),
        "data": Section(data) if setting else Unchecked(default=None),
        "model": Section(model) if setting else Unchecked(default=None),
        **{name: Section(table) for name, table in SECTIONS.items()},
        "baselines": Baselines(),
        "epochs": Epochs(),
    }


# --- the checker ----------------------------------------------------------------------

class _Checker:
    """Collects every problem so one run reports all of them, not just the first."""

    def __init__(self, raw: dict):
        self.raw = raw
        self.errors: list[str] = []

    def fail(self, key: str, expected: str, got: Any) -> Any:
        shown = repr(got)
        shown = shown if len(shown) <= 80 else shown[:70] + " ..."
        self.errors.append(f"{key}: expected {expected}, got {shown}")
        return BAD

    def unknown(self, key: str, node: dict, allowed, elsewhere: dict | None = None) -> None:
        """Report each key of `node` not in `allowed`, with the nearest valid key (or, at
        the top level, the section that has a key of that name: `lr` -> train.lr)."""
        for k in node:
            if k in allowed:
                continue
            prefix = f"{key}." if key else ""
            hint = _did_you_mean(str(k), allowed, prefix)
            if not hint and elsewhere and str(k) in elsewhere:
                hint = f" (did you mean {' or '.join(elsewhere[str(k)])}?)"
            self.errors.append(f"{prefix}{k}: unknown key{hint}; expected one of "
                               f"{', '.join(map(str, allowed))}")

    def section(self, key: str, node: dict, table: dict[str, Rule],
                elsewhere: dict | None = None) -> dict:
        """The checked values of a closed mapping (bad ones left out, defaults filled)."""
        self.unknown(key, node, tuple(table), elsewhere)
        out = {}
        for name, rule in table.items():
            at = f"{key}.{name}" if key else name
            if name not in node:
                if isinstance(rule, Section) and rule.default is REQUIRED:
                    # a required section left out: report its own missing keys
                    value = rule.check(self, at, {})
                elif rule.default is REQUIRED:
                    self.errors.append(f"{at}: missing; expected {rule.expected()}")
                    continue
                else:
                    value = rule.default
            elif node[name] is None and rule.nullable:
                value = None
            else:
                value = rule.check(self, at, node[name])
            if value is not BAD:
                out[name] = value
        return out

    # the path-based form, for alphavil/nlu/sources.py check_task
    def value(self, key: str, rule: Rule) -> Any:
        """Check the value at a dotted path of the raw params; None if missing or bad."""
        node: Any = self.raw
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if rule.default is REQUIRED:
                    self.errors.append(f"{key}: missing; expected {rule.expected()}")
                    return None
                return rule.default
            node = node[part]
        if node is None and rule.nullable:
            return None
        got = rule.check(self, key, node)
        return None if got is BAD else got

    def number(self, key: str, *, default: Any = REQUIRED, **bounds: Any) -> Any:
        return self.value(key, Num(default=default, **bounds))

    def choice(self, key: str, options, default: Any = REQUIRED) -> Any:
        return self.value(key, OneOf(tuple(options), default=default))


# --- checks across keys ---------------------------------------------------------------

def _check_vision(c: _Checker, v: dict) -> None:
    from .digits import source_args
    from .memory import check_vision_sizes

    data, model = v.get("data", {}), v.get("model", {})
    if "source" in data and "source_args" in data:
        source, args = data["source"], source_args(data["source"])
        if args:
            c.section("data.source_args", data["source_args"], {
                arg: Is(str, f"a string (an argument of data.source {source!r})",
                        default=REQUIRED if required else None)
                for arg, required in args.items()})
        elif data["source_args"]:
            c.fail("data.source_args", f"{{}}: data.source {source!r} takes no arguments",
                   data["source_args"])
    split = data.get("digit_split", {})
    if len(split) == 3 and sum(split.values()) > 1.0 + 1e-9:
        c.fail("data.digit_split", "fractions summing to at most 1", split)
    if "canvas" in data and "jitter" in data and 28 + data["jitter"] > data["canvas"]:
        c.fail("data.jitter", f"at most data.canvas - 28 = {data['canvas'] - 28}",
               data["jitter"])
    size, channels = data.get("image_size"), model.get("channels")
    if size is not None and channels is not None and size >> len(channels) < 1:
        c.fail("model.channels", f"at most {size.bit_length() - 1} layers for data.image_size "
               f"{size} (each halves the side)", channels)
    else:
        check_vision_sizes(c, data, model, v.get("train", {}))
        for name, task in v.get("tasks", {}).items():  # a task's own size must fit too
            if task.n_train is not None and "n_train" in data and task.n_train > data["n_train"]:
                n = len(c.errors)
                check_vision_sizes(c, {**data, "n_train": task.n_train}, model, v.get("train", {}))
                if len(c.errors) > n:
                    c.errors[n:] = [f"tasks.{name}.n_train: expected a size whose images fit "
                                    f"this machine's memory, got {task.n_train}"]


def _check_nlu(c: _Checker, v: dict) -> None:
    from .nlu.encoder import SHIPPED

    data, model = v.get("data", {}), v.get("model", {})
    for ours, theirs in (("tokenizer", "encoder"), ("tokenizer_revision", "encoder_revision")):
        if ours in data and theirs in model and data[ours] != model[theirs]:
            c.fail(f"data.{ours}", f"the same as model.{theirs} ({model[theirs]!r}): the "
                   "prepared token ids must match the encoder's vocabulary", data[ours])
    if model.get("lora") and model.get("train_layers") == 0:
        c.fail("model.train_layers", "null or >= 1 with model.lora (the layers that get "
               "adapters)", 0)
    if model.get("encoder") in SHIPPED and model.get("encoder_revision") is not None:
        c.fail("model.encoder_revision", f"null for the shipped encoder {model['encoder']!r} "
               "(its weights come with its pip package)", model["encoder_revision"])


def validate(raw: Any, source: str = "params.yaml") -> Params:
    """Check every key the pipeline reads; raise ParamsError listing all problems."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level, got "
                          f"{type(raw).__name__}")
    c = _Checker(raw)
    setting = raw.get("setting", "vision")
    setting = setting if isinstance(setting, str) and setting in SETTINGS else None
    top = schema(setting)
    # a section key written at the top level (lr: 0.1) is pointed to its section
    elsewhere: dict[str, list[str]] = {}
    for name, rule in top.items():
        for k in rule.schema if isinstance(rule, Section) else ():
            elsewhere.setdefault(k, []).append(f"{name}.{k}")
    v = c.section("", raw, top, elsewhere)

    tasks = v.get("tasks", {})
    # a task whose entry is bad (already reported) still names a valid target
    named = raw["tasks"] if isinstance(raw.get("tasks"), dict) else tasks
    if "target" in v and tasks and v["target"] not in named:
        c.fail("target", f"one of the task names {list(tasks)}"
               + _did_you_mean(v["target"], tasks), v["target"])
    if setting == "vision":
        _check_vision(c, v)
    elif setting == "nlu":
        _check_nlu(c, v)
    av = v.get("alphavil", {})
    if av.get("weight_mode") == "step" and "weight_floor" in av and not (
            isinstance(av["weight_floor"], (int, float)) and av["weight_floor"] >= 0):
        c.fail("alphavil.weight_floor", "a number >= 0 with weight_mode 'step' (a negative "
               "weight would be a negative step size, i.e. gradient ascent)", av["weight_floor"])

    if c.errors:
        raise ParamsError("\n".join(f"{source}: {e}" for e in c.errors))
    return Params(raw=raw, seeds=v["seeds"], target=v["target"], tasks=tasks,
                  epochs=v["epochs"], methods=["alphavil"] + v["baselines"])


# --- reading the file -----------------------------------------------------------------

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
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(err, "problem", None) or str(err)
        raise ParamsError(f"{source}: not valid YAML{where}: "
                          f"{' '.join(str(what).split())}") from None
    if problems:
        raise ParamsError("\n".join(f"{source}: {p}" for p in problems))
    return raw


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content; a missing, non-UTF-8 or malformed file is a ParamsError."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: file not found (run from the repository root)")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ParamsError(f"{path}: expected UTF-8 text, got byte 0x{data[err.start]:02x} at "
                          f"offset {err.start}") from None
    return parse_yaml(text, str(path))


def check_data_source(params: Params) -> None:
    """Files the prepare stage reads must exist before it starts. Only prepare calls
    this: later stages read data/prepared, which a teammate may have pulled from a
    remote without having the source files."""
    from .digits import FASHION_DIR, INSTALLED_BY

    for name, task in params.tasks.items():
        if task.inputs == "fashion":
            if not any((Path(FASHION_DIR) / f"train-images-idx3-ubyte{ext}").is_file()
                       for ext in ("", ".gz")):
                raise ParamsError(f"tasks.{name}.inputs: expected Fashion-MNIST's IDX files "
                                  f"in {FASHION_DIR} for 'fashion', not found; "
                                  f"`{INSTALLED_BY.get(FASHION_DIR, 'make install-fashion')}` "
                                  "installs it")
    d = params.raw.get("data") or {}
    if d.get("source") != "mnist_idx":
        return

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
    return validate(read_yaml(path), str(path))
