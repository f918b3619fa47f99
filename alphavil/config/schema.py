"""params.yaml's schema: one pydantic model per section, with its defaults and checks.

Every mapping is closed (a key the schema does not know, such as `alpha.gaurd`, is
refused, never ignored) and every value strict: no "1" for 1, no 1.0 for an integer, no
"yes" for true. What depends on the setting (tasks, data, model) is typed by the
setting's own Params class (vision.py, nlu.py); a check that relates keys runs as a
validator of the smallest model that holds them, so one run reports every problem it can.
"""

from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WrapValidator,
                      create_model, field_serializer, model_validator)

from alphavil import registry
from alphavil.config.messages import INT64_MAX, ParamsError, bad, did_you_mean, problem, problems

SEED_MAX = 2**64 - 1  # torch.manual_seed's upper limit

# Keys an epoch entry may override for that epoch only (see docs/algorithm.md).
EPOCH_OVERRIDE_KEYS = {
    "sample_ratio": ("alphavil", "sample_ratio"),
    "lr": ("train", "lr"),
    "alpha_steps": ("alpha", "steps"),
    "alpha_lr": ("alpha", "lr"),
}


class Section(BaseModel):
    """A closed mapping of params.yaml, immutable once validated."""
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def Int(ge: int | None = None, le: int = INT64_MAX) -> Any:
    return Annotated[int, Field(ge=ge, le=le)]


def distinct(what: str):
    """A list whose items must differ (`what` says so in the message)."""
    def check(items: list) -> list:
        if len(set(items)) != len(items):
            raise problem(what)
        return items
    return AfterValidator(check)


def _as_given(value: Any, check) -> Any:
    """A number is checked as a float but kept as written: an integer stays one, so what
    the code computes from it (and the params it writes back) is what the file said."""
    checked = check(value)
    return value if type(value) is int else checked


Number = Annotated[float, WrapValidator(_as_given)]
Seed = Int(0, SEED_MAX)
Positive = Annotated[Number, Field(gt=0.0)]
Fraction = Annotated[Number, Field(ge=0.0, le=1.0)]
Ratio = Annotated[Number, Field(gt=0.0, le=1.0)]
Text = Annotated[str, Field(min_length=1)]
TaskName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", description=(
    "task names made of letters, digits and '_', starting with a letter"))]


def Tasks(task: Any) -> Any:
    return Annotated[dict[TaskName, task], Field(
        min_length=1, description="a non-empty mapping of task names to task specs")]


class TaskSpec(Section):
    """A task of params.yaml's `tasks` (vision.VisionTask, or an NLU task of nlu.py)."""


class HFSplits(Section):
    """Which splits of a Hugging Face dataset are ours: train always; dev and test where
    the dataset has them (null: carved from train with data.seed)."""
    train: Text = "train"
    dev: Text | None = None
    test: Text | None = None


class HFSource(Section):
    """The keys of a task read through `datasets` from a hub name, a builder with
    `data_files` (csv, json, parquet, imagefolder, ...) or a folder saved with save_to_disk
    (text_sources.load_hf_dataset)."""
    name: Text = Field(description="a hub dataset name, a builder name or a local folder")
    config: Text | None = None  # the dataset's configuration (load_dataset's second argument)
    revision: Text | None = Field(default=None, description=(
        "a hub revision (string): a branch, tag or commit"))
    data_files: Text | list[Text] | dict[str, Text | list[Text]] | None = Field(
        default=None, description="a path, a list of paths or a mapping split -> path(s)")
    splits: HFSplits = HFSplits()


class Train(Section):  # every fine-tune and baseline epoch
    optimizer: Literal[registry.OPTIMIZERS]
    lr: Positive
    batch_size: Int(1)
    device: Literal[registry.DEVICES] = "cpu"
    precision: Literal[tuple(registry.PRECISIONS)] = "fp32"
    # what a baseline whose loss turns NaN/inf does (alphavil/pipeline.py train_method)
    on_divergence: Literal["stop", "mark"] = "stop"


class Base(Section):
    warmup_steps: Int(0)


class AlphaVIL(Section):
    sample_ratio: Ratio
    weight_mode: Literal[registry.WEIGHT_MODES] = "step"
    weight_rule: Literal[tuple(registry.WEIGHT_RULES)]
    weight_floor: Number | None = None  # null: no clamp (weight_mode loss only)
    delta_dtype: Literal[registry.DELTA_DTYPES] = "float32"

    @model_validator(mode="after")
    def _floor_under_step(self):
        if self.weight_mode == "step" and (self.weight_floor is None or self.weight_floor < 0):
            problems([bad(("weight_floor",), "a number >= 0 with weight_mode 'step' (a "
                          "negative weight would be a negative step size, i.e. gradient "
                          "ascent)", self.weight_floor)])
        return self


class Alpha(Section):  # α estimation on the target's dev loss
    init: Number = 1.0
    steps: Int(0)
    lr: Positive
    optimizer: Literal[registry.ALPHA_OPTIMIZERS]
    batch_size: Int(1)
    # a params.yaml without the key gets the paper's unconditional merge; the committed
    # params.yaml turns the guard on (chosen on dev, docs/results.md)
    guard: bool = False
    combine: Literal[registry.COMBINES] = "sum"
    # budget: `steps` steps of `optimizer` (the paper's cost); converge: L-BFGS on the whole
    # dev split until the gradient norm <= tol or max_iter iterations
    fit: Literal[registry.ALPHA_FITS] = "converge"
    tol: Positive = 1e-5
    max_iter: Int(1) = 100
    # joint: every α at once (paper); target_first: the target's α, then the others from 0
    order: Literal[registry.ALPHA_ORDERS] = "joint"
    # target_first only: auxiliary deltas scaled to the target delta's norm for the fit
    normalise: bool = False
    # dev: α fitted on the dev split that also selects and reports (paper); dev_half: on a
    # fixed half of it, the other half selecting (alphavil/data/prepared.py dev_parts)
    split: Literal[registry.ALPHA_SPLITS] = "dev"

    @model_validator(mode="after")
    def _normalise_needs_target_first(self):
        if self.normalise and self.order != "target_first":
            problems([bad(("normalise",), "false unless order is 'target_first' (deltas are "
                          "scaled to the target delta's norm, fitted after it)",
                          self.normalise)])
        return self


class DIW(Section):
    # B: KMM needs B >= 1 (weights in [0, B] with mean 1)
    max_weight: Annotated[Number, Field(ge=1.0)] = 10.0
    iterations: Int(1) = 100
    # exact KMM up to this many examples per auxiliary task (alphavil/methods/diw.py)
    max_examples: Int(2) = 4000


class ForkMerge(Section):
    # rounds of batches (one batch of each task) between fork and merge; null: one per epoch
    interval: Int(1) | None = None
    # the joint branch's merge weights tried on the target's dev split (0: target-only)
    lambdas: Annotated[list[Fraction], Field(
        min_length=1, description="a non-empty list of distinct numbers in [0, 1]"),
        distinct("a non-empty list of distinct numbers in [0, 1]")] = [
            i / 10 for i in range(11)]
    # two_branch: target-only and joint branch, λ on the grid; published: thuml/ForkMerge's
    # pruning, top-k branches sampled 1:1 target:auxiliary, best-dev checkpoints, greedy merge
    variant: Literal[registry.FORKMERGE_VARIANTS] = "two_branch"
    # published: each branch's count of (top-ranked) auxiliary tasks; null: [0, ⌈n/2⌉, n]
    top_k: Annotated[list[Int(0)], Field(
        min_length=1, description="a non-empty list of distinct integers >= 0"),
        distinct("a non-empty list of distinct integers >= 0")] | None = None
    # published: dev evaluations per branch per fork, evenly spaced; null: 5 (one an epoch)
    checkpoints: Int(1) | None = None

    @model_validator(mode="after")
    def _published_knobs(self):
        if self.variant != "published":
            problems([bad((key,), "null unless variant is 'published'", getattr(self, key))
                      for key in ("top_k", "checkpoints") if getattr(self, key) is not None])
        return self


class GCS(Section):
    # false: an auxiliary gradient is added where its cosine with the target's is > 0 (the
    # paper's unweighted variant); true: scaled by that cosine
    weighted: bool = False


class Joint(Section):
    # how the joint baselines order their tasks' batches into steps (alphavil/methods/joint.py):
    # a batch of every task per step, shorter streams starting over (LibMTL's); each batch
    # once, spread evenly over the epoch; or each batch once, round-robin until every task
    # is used up (the old behaviour: a small target's batches all come first)
    schedule: Literal[registry.JOINT_SCHEDULES] = "each_step"


class Budget(Section):
    # what a baseline epoch spends (alphavil/budget.py): one pass over each task's ρ-subset,
    # or as many forward+backward example passes as αVIL plans for the epoch
    match: Literal["epochs", "compute"] = "epochs"


class Report(Section):
    # which per-task quantity the ranking score (summary.json ranking_<quantity>) orders
    rank_by: Literal[registry.RANK_BY] = "weight"


SECTIONS = {"train": Train, "base": Base, "alphavil": AlphaVIL, "alpha": Alpha}


def _override(section: str, key: str) -> tuple:
    """An override is checked with the type and bounds of the key it overrides; left
    out, it is not set (the section's value stands)."""
    field = SECTIONS[section].model_fields[key]
    return (Annotated[(field.annotation, *field.metadata)] if field.metadata
            else field.annotation), None


EpochOverrides = create_model("EpochOverrides", __base__=Section, **{
    key: _override(*where) for key, where in EPOCH_OVERRIDE_KEYS.items()})


class EpochSpec(Section):
    id: str
    prev: str
    n: int
    overrides: Annotated[EpochOverrides, BeforeValidator(lambda v: {} if v is None else v)] = \
        EpochOverrides()

    @property
    def given(self) -> dict:
        """The overrides this epoch sets, by key."""
        return self.overrides.model_dump(exclude_unset=True)

    @field_serializer("overrides")
    def _only_given(self, overrides) -> dict:
        return overrides.model_dump(exclude_unset=True)


def _chain(epochs: list[EpochSpec]) -> list[EpochSpec]:
    """ep0 <- base, ep1 <- ep0, ...: what `python -m alphavil.workflow.schedule N` writes."""
    found, prev = [], "base"
    for i, ep in enumerate(epochs):
        for key, want in {"id": f"ep{i}", "prev": prev, "n": i + 1}.items():
            if getattr(ep, key) != want:
                found.append(bad((i, key), f"{want!r} (epochs form a chain ep0 <- base, "
                                 "ep1 <- ep0, ...; rewrite with `python -m alphavil.workflow.schedule N`)",
                                 getattr(ep, key)))
        prev = f"ep{i}"
    problems(found)
    return epochs


class Params(Section):
    """The validated params.yaml: every key typed and default-filled. Built once per
    process (config.load_params) and passed down; an epoch's view is `for_epoch`."""
    setting: Literal[tuple(registry.SETTINGS)] = "vision"
    seeds: Annotated[list[Seed], Field(min_length=1, description=(
        "a non-empty list of integers in [0, 2**64 - 1] (torch's seed range)")),
        distinct("no repeated seed")]
    target: Annotated[str, Field(description="a task name (one of the keys of tasks)")]
    tasks: Any = None  # each setting's Params types these three
    data: Any = None
    model: Any = None
    train: Train
    base: Base
    alphavil: AlphaVIL
    alpha: Alpha
    diw: DIW = DIW()
    forkmerge: ForkMerge = ForkMerge()
    gcs: GCS = GCS()
    joint: Joint = Joint()
    budget: Budget = Budget()
    report: Report = Report()
    # the methods compared with αVIL, each run as one train_method stage
    baselines: Annotated[list[Literal[registry.BASELINES]], Field(min_length=1, description=(
        f"names from {sorted(registry.BASELINES)} in a non-empty list")),
        distinct("no repeated method")]
    epochs: Annotated[list[EpochSpec], Field(min_length=1, description=(
        "a non-empty list of {id, prev, n, overrides} entries (rewrite it with "
        "`python -m alphavil.workflow.schedule N`)")), AfterValidator(_chain)]

    @model_validator(mode="before")
    @classmethod
    def _sections_left_out(cls, raw: Any) -> Any:
        """A required section left out reports each of its own required keys."""
        if not isinstance(raw, dict):
            return raw
        required = [n for n, f in cls.model_fields.items() if f.is_required()
                    and isinstance(f.annotation, type) and issubclass(f.annotation, Section)]
        return {**{n: {} for n in required}, **raw}

    @model_validator(mode="after")
    def _target_is_a_task(self):
        if isinstance(self.tasks, dict) and self.target not in self.tasks:
            problems([bad(("target",), f"one of the task names {list(self.tasks)}"
                          + did_you_mean(self.target, self.tasks), self.target)])
        return self

    @model_validator(mode="after")
    def _top_k_fits(self):
        top_k, tasks = self.forkmerge.top_k, self.tasks
        if top_k and isinstance(tasks, dict) and max(top_k) > len(tasks) - 1:
            problems([bad(("forkmerge", "top_k"), f"counts of auxiliary tasks, each at most "
                          f"{len(tasks) - 1} (the tasks besides the target)", top_k)])
        return self

    @property
    def methods(self) -> list[str]:
        """αVIL first, then the baselines."""
        return [registry.ALPHAVIL, *self.baselines]

    def epoch(self, epoch_id: str) -> EpochSpec:
        for ep in self.epochs:
            if ep.id == epoch_id:
                return ep
        raise ParamsError(f"params.yaml: epochs has no entry with id {epoch_id!r} "
                          f"(ids: {[e.id for e in self.epochs]})")

    def for_epoch(self, epoch_id: str) -> "Params":
        """These params with that epoch's overrides applied (self is unchanged)."""
        changed: dict[str, dict] = {}
        for key, value in self.epoch(epoch_id).given.items():
            section, sub = EPOCH_OVERRIDE_KEYS[key]
            changed.setdefault(section, {})[sub] = value
        return self.model_copy(update={s: getattr(self, s).model_copy(update=u)
                                       for s, u in changed.items()})

    def dump(self) -> dict:
        """The validated, default-filled params as plain data (YAML/JSON), in schema order."""
        return self.model_dump(mode="json")
