"""Prepared data on disk: one safetensors file per split plus meta.json.

Vision tasks share the split's images and differ only in their label tensor, so a task's
view costs no copy; a task with its own training size or inputs (params.yaml
tasks.<name>.n_train / inputs) also has its own `images.<task>` tensor in the splits where
its images differ. Image tasks (`setting: images`) each have their own `images.<task>`. Loaded files are kept per process: a stage that evaluates many
checkpoints reads each split once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from alphavil.store.artifacts import ArtifactError, field_error, load_tensors, read_json


# the splits every prepared data set has, in this order
SPLITS = ("train", "dev", "test")

@dataclass
class TaskSplit:
    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    # metrics beyond the default (acc / pearson+spearman) that evaluation reports
    metrics: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        return self.labels.device

    def to(self, device: torch.device) -> "TaskSplit":
        if device == self.device:
            return self
        return TaskSplit({k: v.to(device) for k, v in self.inputs.items()},
                         self.labels.to(device), self.metrics)

    def batch(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        # indices made on the CPU (seeded generators) are moved here; callers that batch
        # a whole pass move its index tensor once instead (a copy per batch waits on a GPU)
        idx = idx.to(self.device)
        return {k: v[idx] for k, v in self.inputs.items()}, self.labels[idx]

    def subset(self, idx: torch.Tensor) -> "TaskSplit":
        inputs, labels = self.batch(idx)
        return TaskSplit(inputs, labels, self.metrics)


# alpha.split dev_half. α is fitted on the target's dev loss, and the same dev split picks
# the best epoch, the lr of the lr grid and ForkMerge's λ, so a dev score after α has been
# fitted to it is optimistic. dev_half cuts the target's dev split once into two fixed
# parts: `fit` (α's fit and every other use of dev while training: alpha.guard, DIW's
# target sample) and `select` (best-on-dev, the lr grid, ForkMerge's λ). The cut is a
# permutation from a constant seed, the same for every model seed and method (paired
# runs), and depends only on the split's size; the dev examples themselves are drawn by
# data.seed. Evaluation records keep `dev` = the whole dev split under either value, so
# dev numbers compare across alpha.split; under dev_half they add `dev_fit` and
# `dev_select` (the whole split's predictions restricted to each part), and selection
# reads `dev_select`. Under alpha.split dev (the default) nothing is cut and no record
# changes.
DEV_PARTS = ("fit", "select")
_DEV_CUT_SEED = 0x0A1FA


def dev_parts(n: int) -> dict[str, torch.Tensor]:
    """alpha.split dev_half: part name -> sorted dev indices; `fit` gets ceil(n/2)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(_DEV_CUT_SEED))
    cut = (n + 1) // 2
    return {"fit": order[:cut].sort().values, "select": order[cut:].sort().values}


@functools.lru_cache(maxsize=8)
def _load_split_file(path: str) -> dict[str, torch.Tensor]:
    tensors, meta = load_tensors(path)
    if meta.get("split") != Path(path).stem:  # e.g. train.safetensors copied onto dev's
        raise ArtifactError(f"{path}: holds the {meta.get('split')!r} split, expected "
                            f"{Path(path).stem!r}; re-run the prepare stage")
    return tensors


def load_meta(data_dir: str | Path) -> dict:
    """meta.json, checked for every entry the model and evaluation read from it."""
    path = Path(data_dir) / "meta.json"
    meta = read_json(path)
    if meta.get("setting") not in ("vision", "nlu", "images"):
        raise field_error(path, "setting", "'vision', 'nlu' or 'images'", meta.get("setting"))
    tasks = meta.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise field_error(path, "tasks", "an object of task entries", tasks)
    for name, task in tasks.items():
        if not isinstance(task, dict):
            raise field_error(path, f"tasks.{name}", "an object", task)
        n = task.get("num_classes")
        if not _is_int(n) or n < 1:
            raise field_error(path, f"tasks.{name}.num_classes", "an integer >= 1", n)
        metrics = task.get("metrics", [])
        if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
            raise field_error(path, f"tasks.{name}.metrics", "a list of metric names", metrics)
        if not isinstance(task.get("metric", ""), (str, type(None))):
            raise field_error(path, f"tasks.{name}.metric", "a metric name", task["metric"])
    if meta["setting"] == "images":
        norm = meta.get("normalise")
        if not (_is_int(meta.get("channels")) and isinstance(norm, dict) and all(
                isinstance(norm.get(k), list) and len(norm[k]) == meta["channels"]
                for k in ("mean", "std"))):
            raise field_error(path, "normalise", "{mean, std}: one number per channel", norm)
    if meta["setting"] in ("vision", "images"):
        if not _is_int(meta.get("image_size")) or meta["image_size"] < 1:
            raise field_error(path, "image_size", "an integer >= 1", meta.get("image_size"))
    else:
        tok = meta.get("tokenizer")
        if not (isinstance(tok, dict) and isinstance(tok.get("name"), str)
                and _is_int(tok.get("vocab_size"))):
            raise field_error(path, "tokenizer", "an object with name and vocab_size", tok)
    return meta


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def num_classes(data_dir: str | Path) -> dict[str, int]:
    return {t: int(m["num_classes"]) for t, m in load_meta(data_dir)["tasks"].items()}


# NLU tasks each have their own examples, stored as `<input>.<task>` tensors
NLU_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def load_task_split(data_dir: str | Path, split: str, task: str) -> TaskSplit:
    """The one data-loading entry point of both settings (meta.json says which)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    tensors = _load_split_file(str(Path(data_dir) / f"{split}.safetensors"))
    key = f"label.{task}"
    if key not in tensors:
        raise ArtifactError(f"{data_dir}/{split}.safetensors has no labels for task {task!r}; "
                            "re-run the prepare stage")
    meta = load_meta(data_dir)
    if meta.get("setting") == "nlu":
        inputs = {k: tensors[f"{k}.{task}"] for k in NLU_INPUTS if f"{k}.{task}" in tensors}
        return TaskSplit(inputs=inputs, labels=tensors[key],
                         metrics=tuple(meta["tasks"][task].get("metrics", ())))
    images = tensors.get(f"images.{task}")  # its own, if it has them
    if images is None:
        images = tensors["images"]
    return TaskSplit(inputs={"images": images}, labels=tensors[key])
