"""The images setting's tasks, data and model sections: tasks from the user's own image
data sets (docs/own-tasks.md; alphavil/data/image_sources.py, image_prepare.py).

Why a setting of its own rather than a `source:` per task of the vision setting: every key
of the vision data section (data.source, digit_split, canvas, jitter) is about composing
MultiMNIST, and none of them means anything for a folder of photos. A separate setting
keeps the default vision schema, and hence every default artifact, exactly as it was; it
mirrors the NLU setting, whose tasks already name their `source` and split sizes. What the
images setting shares with the vision one is the model and prepared format: uint8 images
[N, C, S, S] per task, one head per task sized by its class count.
"""

from typing import Annotated, Literal, Union

from pydantic import Field, TypeAdapter, model_validator

from alphavil import registry
from alphavil.config.messages import bad, problems
from alphavil.config.schema import (Fraction, HFSource, Int, Params, Seed, Section, Tasks,
                                    TaskSpec, Text)
from alphavil.data.tasks import ROLES
from alphavil.data.text_sources import FILE_FORMATS

KINDS = registry.SETTING_KINDS["images"]
Label = str | int


class ImageTask(TaskSpec):
    source: str
    label_noise: Fraction = 0.0  # fraction of training labels replaced by random classes
    # the task's own split sizes (null: data's n_train / n_dev / n_test; a split the source
    # names itself is used whole unless its size is set)
    n_train: Int(1) | None = None
    n_dev: Int(1) | None = None
    n_test: Int(1) | None = None
    # class name -> the raw labels it groups; rows of other labels are dropped (null: every
    # label is a class)
    classes: dict[Text, Annotated[list[Label], Field(
        min_length=1, description="a non-empty list of labels")]] | None = Field(
        default=None, min_length=2, description=(
            "a mapping of at least two class names to non-empty lists of labels"))
    role: Literal[ROLES] | None = None  # ground truth of a suite, read by the metrics only


class FolderTask(ImageTask):
    source: Literal["folder"]
    path: Text = Field(description="a folder with one sub-folder of images per class")
    dev: Text | None = None  # folders laid out like `path` (null: carved from it)
    test: Text | None = None


class FilesImageTask(ImageTask):
    source: Literal["files"]
    train: Text = Field(description="the path of a CSV/JSON/parquet file")
    dev: Text | None = None  # tables laid out like `train` (null: carved from it)
    test: Text | None = None
    format: Literal[tuple(sorted(FILE_FORMATS))] | None = None  # null: from the extension
    image: Text = Field(description="the image-path column's name")
    label: Text = Field(description="the label column's name")


class HFImageTask(HFSource, ImageTask):
    source: Literal["hf"]
    image: Text = "image"
    label: Text = "label"


SOURCE_TASKS = {t.model_fields["source"].annotation.__args__[0]: t
                for t in (FolderTask, FilesImageTask, HFImageTask)}
AnyImageTask = Annotated[Union[tuple(SOURCE_TASKS.values())], Field(
    discriminator="source", description=f"a mapping with 'source' ({', '.join(SOURCE_TASKS)})")]
IMAGE_TASK = TypeAdapter(AnyImageTask)  # one task entry checked alone (tests, tools)


class ImagesData(Section):
    seed: Seed  # which images each split draws (fixed across model seeds)
    image_size: Int(8, 1024)  # every image is resized to image_size x image_size
    channels: Literal[1, 3] = Field(default=1, description="1 (grey) or 3 (RGB)")
    fit: Literal[registry.FITS] = "stretch"  # stretch: to the square | crop: centre square
    normalise: Literal[registry.NORMALISE] = "unit"
    n_train: Int(1)
    n_dev: Int(1)
    n_test: Int(1)


class ImagesModel(Section):
    kind: Literal[KINDS] = Field(description=f"one of {list(KINDS)} with setting images")
    # cnn: one 5x5 convolution + 2x2 max-pool per entry; resnet: one stage of `blocks`
    # residual blocks per entry, each stage after the first halving the side
    channels: list[Int(1)] = Field(default=[16, 32], min_length=1,
                                   description="a non-empty list of integers >= 1")
    hidden: Int(1) = 64
    blocks: Int(1) = 1  # resnet: residual blocks per stage
    heads: Literal["task"] = "task"  # one head per task (tasks of other data sets differ)


class ImagesParams(Params):
    tasks: Tasks(AnyImageTask)
    data: ImagesData
    model: ImagesModel

    @model_validator(mode="after")
    def _sizes(self):
        size, channels = self.data.image_size, self.model.channels
        if self.model.kind == "cnn" and size >> len(channels) < 1:
            problems([bad(("model", "channels"), f"at most {size.bit_length() - 1} layers for "
                          f"data.image_size {size} (each halves the side)", channels)])
        if self.model.kind == "cnn" and self.model.blocks != 1:
            problems([bad(("model", "blocks"), "1 with model.kind cnn (blocks are the "
                          "resnet's)", self.model.blocks)])
        return self
