"""What a method needs to train one seed: params, the model, and the task splits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from alphavil.runtime import device
from alphavil.store import layout
from alphavil.runtime import stagetime
from alphavil.store.artifacts import ArtifactError
from alphavil.config import Params, ParamsError
from alphavil.data.prepared import (DEV_PARTS, TaskSplit, dev_parts, load_meta, load_task_split,
                                     num_classes)
from alphavil.models.multitask import MultiTaskModel, build_model


@dataclass
class RunContext:
    params: Params
    seed: int
    data_dir: Path
    model: MultiTaskModel
    meta: dict
    compute: device.Compute = device.CPU
    _cache: dict = field(default_factory=dict)

    @classmethod
    def build(cls, params: Params, seed: int, data_dir: str | Path = layout.DATA,
              compute: device.Compute | None = None) -> "RunContext":
        """The model is built on the CPU from the seed (the same θ_0 on every device) and
        then placed on `compute` (train.device / train.precision unless given)."""
        compute = device.from_params(params) if compute is None else compute
        data_dir = Path(data_dir)
        meta = load_meta(data_dir)
        classes = num_classes(data_dir)
        missing = [t for t in params.tasks if t not in classes]
        if missing:
            raise ArtifactError(f"{data_dir / 'meta.json'}: prepared data lacks tasks {missing}; "
                                "re-run prepare")
        # model.heads: label groups the heads by the tasks' label kinds (vision tasks)
        labels = ({t: s.label for t, s in params.tasks.items()}
                  if params.model.heads == "label" else None)
        model = build_model(params.model, {t: classes[t] for t in params.tasks}, meta, seed,
                            task_labels=labels)
        device.init(compute)
        device.place(model, compute)
        stagetime.mark("ready")
        return cls(params=params, seed=seed, data_dir=data_dir, model=model, meta=meta,
                   compute=compute)

    def split(self, split: str, task: str) -> TaskSplit:
        key = (split, task)
        if key not in self._cache:
            self._cache[key] = load_task_split(self.data_dir, split, task).to(
                self.compute.device)
        return self._cache[key]

    def target_dev(self, use: str) -> TaskSplit:
        """The target's dev examples for `use`: `fit` (α, and every other use of dev while
        training) or `select` (choosing among trained models). The whole dev split under
        alpha.split dev; its part under dev_half (alphavil/data/prepared.py dev_parts)."""
        if use not in DEV_PARTS:
            raise ValueError(f"use must be one of {DEV_PARTS}, got {use!r}")
        dev = self.split("dev", self.target)
        if self.params.alpha.split == "dev":
            return dev
        key = ("dev", self.target, use)
        if key not in self._cache:
            if len(dev) < 2:
                raise ParamsError(f"alpha.split: expected 'dev' with a target dev split of "
                                  f"{len(dev)} example(s); dev_half needs at least 2")
            self._cache[key] = dev.subset(dev_parts(len(dev))[use])
        return self._cache[key]

    @property
    def tasks(self) -> list[str]:
        return list(self.params.tasks)

    @property
    def target(self) -> str:
        return self.params.target
