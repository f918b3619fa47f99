"""The NLU setting's tasks, data and model sections (docs/nlu.md; alphavil/nlu/).

A task's keys depend on its `source` (alphavil/nlu/sources.py): one model per source,
told apart by that key.
"""

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, TypeAdapter, create_model, model_validator

from alphavil import registry
from alphavil.data.encoders import SHIPPED
from alphavil.data.text_sources import FILE_FORMATS, GLUE_TASKS, METRICS, VIEWS
from alphavil.data.tasks import ROLES
from alphavil.config.messages import bad, problems
from alphavil.config.schema import (Fraction, HFSource, Int, Number, Params, Positive, Seed,
                                    Section, Tasks, TaskSpec, Text)

KIND = registry.SETTINGS["nlu"]
ENCODER = "an encoder name: shipped, a folder or a hub name"
PathText = Annotated[str, Field(min_length=1, description="a path (string)")]
Revision = Annotated[str, Field(min_length=1, description="a hub revision (string)")]


class NLUTask(TaskSpec):
    source: str
    label_noise: Fraction = 0.0
    # the task's own split sizes (null: data's n_train / n_dev / n_test)
    n_train: Int(1) | None = None
    n_dev: Int(1) | None = None
    n_test: Int(1) | None = None
    metric: Literal[tuple(sorted(METRICS))] | None = None  # null: the view's (GLUE's choice)
    role: Literal[ROLES] | None = None  # ground truth of a suite, read by the metrics only

    @property
    def view_name(self) -> str:
        """How the task reads labels off its source (meta.json's `view`)."""
        return self.view


def _source_task(source: str) -> type[NLUTask]:
    """A source with named label views (snli, rotten_tomatoes, bbc_news)."""
    return create_model(f"{source}_task", __base__=NLUTask, source=(Literal[source], ...),
                        view=(Literal[tuple(VIEWS[source])], ...), path=(PathText | None, None))


class GlueTask(NLUTask):
    source: Literal["glue"]
    name: Literal[tuple(GLUE_TASKS)]  # the GLUE task: its columns, labels and metric
    path: PathText | None = None  # a local copy laid out like the hub repository
    revision: Revision | None = None

    @property
    def view_name(self) -> str:
        return self.name


class FilesTask(NLUTask):
    source: Literal["files"]
    train: Text = Field(description="the path of a CSV/JSON/parquet file")
    dev: Text | None = Field(default=None, description="a file path or null (carved from train)")
    test: Text | None = Field(default=None, description="a file path or null (carved from train)")
    format: Literal[tuple(sorted(FILE_FORMATS))] | None = None  # null: from the extension
    text: list[Text] = Field(min_length=1, max_length=2,
                             description="a list of one or two column names")
    label: Text = Field(description="the label column's name")
    task_type: Literal["classification", "regression"] = "classification"
    # class names in id order (null: integer labels as they are, else sorted strings)
    label_names: list[str | int] | None = Field(
        default=None, min_length=2, description="a list of at least two distinct class names")

    @model_validator(mode="after")
    def _names(self):
        names = self.label_names
        if names is not None and len(set(map(str, names))) != len(names):
            problems([bad(("label_names",), "a list of at least two distinct class names",
                          names)])
        if self.task_type == "regression" and names is not None:
            problems([bad(("label_names",), "nothing for a regression task", names)])
        return self

    @property
    def view_name(self) -> str:
        return "files"


class HFTextTask(HFSource, FilesTask):
    """Any Hugging Face dataset with declared text and label columns (docs/own-tasks.md);
    labels are read as for `files`."""
    source: Literal["hf"]
    train: None = None  # the splits come from `splits:`, not from files
    dev: None = None
    test: None = None
    format: None = None  # the builder (name) reads the files
    label: Text = "label"

    @property
    def view_name(self) -> str:
        return "hf"


SOURCE_TASKS = {t.model_fields["source"].annotation.__args__[0]: t
                for t in [*map(_source_task, VIEWS), GlueTask, FilesTask, HFTextTask]}
AnyNLUTask = Annotated[Union[tuple(SOURCE_TASKS.values())], Field(
    discriminator="source", description=f"a mapping with 'source' ({', '.join(SOURCE_TASKS)})")]
# one task entry checked alone (tests, tools)
NLU_TASK = TypeAdapter(AnyNLUTask)


class NLUData(Section):
    seed: Seed  # which examples each split draws (fixed across model seeds)
    tokenizer: Text = Field(description=f"{ENCODER} (the same as model.encoder)")
    tokenizer_revision: Text | None = Field(
        default=None, description="a hub revision (the same as model.encoder_revision)")
    max_length: Int(8, 512)
    n_train: Int(1)
    n_dev: Int(1)
    n_test: Int(1)


class LoRA(Section):
    rank: Int(1)
    alpha: Positive
    dropout: Annotated[Number, Field(ge=0.0, le=0.9)] = 0.0
    targets: list[Text] = Field(min_length=1, description=(
        "a non-empty list of module names (e.g. [query, value])"))


class NLUModel(Section):
    kind: Literal[KIND] = Field(description=f"one of {[KIND]} with setting nlu")
    encoder: Text = Field(description=ENCODER)
    encoder_revision: Text | None = Field(
        default=None, description="a hub revision: a branch, tag or commit of model.encoder")
    init: Literal["pretrained", "random"] = "pretrained"
    pooling: Literal[registry.POOLINGS] = "mean"
    train_layers: Int(0) | None = None  # the top layers that train (null: all)
    freeze_embeddings: bool = False
    dropout: Annotated[Number, Field(ge=0.0, le=0.9)] | None = None  # null: the encoder's
    # LoRA adapters via peft (null: none): only they and the heads train (docs/nlu.md)
    lora: LoRA | None = None
    heads: ClassVar[str] = "task"  # one head per task (model.heads is the vision setting's)


class NLUParams(Params):
    tasks: Tasks(AnyNLUTask)
    data: NLUData
    model: NLUModel

    @model_validator(mode="after")
    def _encoder(self):
        data, model, found = self.data, self.model, []
        for ours, theirs in (("tokenizer", "encoder"), ("tokenizer_revision", "encoder_revision")):
            if getattr(data, ours) != getattr(model, theirs):
                found.append(bad(("data", ours), f"the same as model.{theirs} "
                                 f"({getattr(model, theirs)!r}): the prepared token ids must "
                                 "match the encoder's vocabulary", getattr(data, ours)))
        if model.lora is not None and model.train_layers == 0:
            found.append(bad(("model", "train_layers"), "null or >= 1 with model.lora (the "
                             "layers that get adapters)", 0))
        if model.encoder in SHIPPED and model.encoder_revision is not None:
            found.append(bad(("model", "encoder_revision"), f"null for the shipped encoder "
                             f"{model.encoder!r} (its weights come with its pip package)",
                             model.encoder_revision))
        problems(found)
        return self
