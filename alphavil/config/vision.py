"""The vision setting's tasks, data and model sections (MultiMNIST, alphavil/multimnist.py)."""

from typing import Literal

from pydantic import Field, model_validator

from alphavil import registry
from alphavil.data.digits import DIGIT_SOURCES, source_args
from alphavil.config.memory import vision_size_problems
from alphavil.data.tasks import ROLES, TASK_INPUTS, TASK_LABELS  # the registries of task kinds
from alphavil.config.messages import bad, missing, problems, unknown
from alphavil.config.schema import Fraction, Int, Params, Ratio, Seed, Section, Tasks, TaskSpec

KIND = registry.SETTINGS["vision"]


class VisionTask(TaskSpec):
    label: Literal[tuple(TASK_LABELS)]
    label_noise: Fraction = 0.0  # fraction of training labels replaced by random classes
    # own training size (null: data.n_train); dev and test are the data section's
    n_train: Int(1) | None = None
    inputs: Literal[tuple(TASK_INPUTS)] = "shared"
    role: Literal[ROLES] | None = None  # ground truth of a suite, read by the metrics only


class DigitSplit(Section):  # disjoint pools of source digits
    train: Ratio
    dev: Ratio
    test: Ratio

    @model_validator(mode="after")
    def _at_most_all(self):
        if self.train + self.dev + self.test > 1.0 + 1e-9:
            problems([bad((), "fractions summing to at most 1", self.model_dump())])
        return self


class VisionData(Section):
    source: Literal[tuple(DIGIT_SOURCES)]
    # the keyword arguments of data.source's loader (alphavil/digits.py), checked below
    source_args: dict = Field(default={}, description="a mapping")
    seed: Seed
    digit_split: DigitSplit
    n_train: Int(1)
    n_dev: Int(1)
    n_test: Int(1)
    canvas: Int(28)
    jitter: Int(0)
    image_size: Int(8)

    @model_validator(mode="after")
    def _args_and_canvas(self):
        found, args, given = [], source_args(self.source), self.source_args
        what = f"a string (an argument of data.source {self.source!r})"
        if not args and given:
            found.append(bad(("source_args",), f"{{}}: data.source {self.source!r} takes no "
                             "arguments", given))
        elif args:
            found += [unknown(("source_args", k), list(args), v)
                      for k, v in given.items() if k not in args]
            found += [missing(("source_args", a), what)
                      for a, required in args.items() if required and a not in given]
            found += [bad(("source_args", k), what, v) for k, v in given.items()
                      if k in args and not (isinstance(v, str) and v)]
        if 28 + self.jitter > self.canvas:
            found.append(bad(("jitter",), f"at most data.canvas - 28 = {self.canvas - 28}",
                             self.jitter))
        problems(found)
        return self


class VisionModel(Section):
    kind: Literal[KIND] = Field(description=f"one of {[KIND]} with setting vision")
    channels: list[Int(1)] = Field(default=[16, 32], min_length=1,
                                   description="a non-empty list of integers >= 1")
    hidden: Int(1) = 64
    # task: one classifier head per task (the paper's model); label: one per label kind,
    # shared by the tasks that read the same classes (alphavil/models.py)
    heads: Literal["task", "label"] = "task"


class VisionParams(Params):
    tasks: Tasks(VisionTask)
    data: VisionData
    model: VisionModel

    @model_validator(mode="after")
    def _sizes(self):
        size, channels = self.data.image_size, self.model.channels
        if size >> len(channels) < 1:
            problems([bad(("model", "channels"), f"at most {size.bit_length() - 1} layers for "
                          f"data.image_size {size} (each halves the side)", channels)])
        found = vision_size_problems(self.data, self.model, self.train.batch_size)
        for name, task in self.tasks.items():  # a task's own size must fit too
            if task.n_train is not None and task.n_train > self.data.n_train and \
                    vision_size_problems(self.data.model_copy(update={"n_train": task.n_train}),
                                         self.model, self.train.batch_size):
                found.append((f"tasks.{name}.n_train", "a size whose images fit this "
                              "machine's memory", task.n_train))
        problems([bad(tuple(key.split(".")), text, got) for key, text, got in found])
        return self
