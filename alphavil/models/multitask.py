"""The one registry of model kinds: a shared trunk plus one head per task."""

from __future__ import annotations

import torch
from torch import nn

from alphavil import registry
from alphavil.runtime.device import autocast


class MultiTaskModel(nn.Module):
    """Shared trunk -> features; heads[head_of[task]] -> logits. Parameter names are
    `trunk.*` and `heads.<head>.*`, which is what deltas and checkpoints are keyed by.

    Every task has its own head (`heads.<task>`, the paper's model) unless `head_of` maps
    tasks to a shared head (model.heads: label, one head per label kind): then an
    auxiliary task with the target's label space trains the target's own classifier too,
    so its delta can reach the target's output through more than the trunk."""

    # train.precision bf16: forward passes under autocast (device.place sets it). Outputs
    # come back as float32, so losses, α and metrics are computed in float32 as with fp32.
    autocast_dtype: torch.dtype | None = None

    def __init__(self, trunk: nn.Module, feature_dim: int, task_classes: dict[str, int],
                 head_of: dict[str, str] | None = None):
        super().__init__()
        self.trunk = trunk
        self.head_of = {t: (head_of or {}).get(t, t) for t in task_classes}
        classes: dict[str, int] = {}
        for t, c in task_classes.items():
            h = self.head_of[t]
            if classes.setdefault(h, c) != c:
                raise ValueError(f"head {h!r} is shared by tasks with {classes[h]} and {c} "
                                 "classes; a shared head needs one label space")
        self.heads = nn.ModuleDict({h: nn.Linear(feature_dim, c) for h, c in classes.items()})

    def parameter_names(self, task: str) -> list[str]:
        """What training on `task` may change: the shared trunk and the task's head."""
        head = f"heads.{self.head_of[task]}."
        return [n for n, p in self.named_parameters()
                if p.requires_grad and (n.startswith("trunk.") or n.startswith(head))]

    def features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.autocast_dtype is None:
            return self.trunk(inputs)
        with autocast(self.autocast_dtype, _device_type(inputs)):
            out = self.trunk(inputs)
        return out.float()

    def forward(self, inputs: dict[str, torch.Tensor], task: str) -> torch.Tensor:
        if self.autocast_dtype is None:
            return self.heads[self.head_of[task]](self.trunk(inputs))
        with autocast(self.autocast_dtype, _device_type(inputs)):
            logits = self.heads[self.head_of[task]](self.trunk(inputs))
        return logits.float()


def _device_type(inputs: dict[str, torch.Tensor]) -> str:
    return next(iter(inputs.values())).device.type


class Standardise(nn.Module):
    """Pixels (uint8) -> p / 255, then (x - mean) / std per channel where prepared data of
    `setting: images` records them (meta.json `normalise`); plain p / 255 otherwise, so the
    MultiMNIST model computes exactly what it always did. Buffers, not parameters: no
    delta or checkpoint holds them, every build reads them from meta.json."""

    def __init__(self, meta: dict):
        super().__init__()
        norm = meta.get("normalise")
        self.standardise = norm is not None
        if self.standardise:
            shape = (1, len(norm["mean"]), 1, 1)
            self.register_buffer("mean", torch.tensor(norm["mean"]).view(shape), persistent=False)
            self.register_buffer("std", torch.tensor(norm["std"]).view(shape), persistent=False)

    def forward(self, images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        x = images.to(dtype) / 255.0
        return (x - self.mean.to(dtype)) / self.std.to(dtype) if self.standardise else x


class SmallCNN(nn.Module):
    """LeNet-style trunk for MultiMNIST (no batch norm: every weight is a parameter, so a
    delta captures everything a fine-tune changed); `in_channels` 3 for RGB image tasks."""

    def __init__(self, image_size: int, channels: list[int], hidden: int,
                 in_channels: int = 1, meta: dict | None = None):
        super().__init__()
        self.pixels = Standardise(meta or {})
        layers: list[nn.Module] = []
        c_in, side = in_channels, image_size
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)]
            c_in, side = c_out, side // 2
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, hidden), nn.ReLU())
        self.out_dim = hidden

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # follow the weights' dtype, so a float64 copy of the model runs end to end
        x = self.pixels(inputs["images"], self.conv[0].weight.dtype)
        return self.fc(self.conv(x))


def build_cnn(model, task_classes: dict[str, int], data_meta: dict,
              head_of: dict[str, str] | None = None) -> MultiTaskModel:
    """`model`: the vision model section (config.vision.VisionModel)."""
    trunk = SmallCNN(data_meta["image_size"], list(model.channels), int(model.hidden),
                     int(data_meta.get("channels", 1)), data_meta)
    return MultiTaskModel(trunk, trunk.out_dim, task_classes, head_of)


def build_model(model, task_classes: dict[str, int], data_meta: dict, seed: int,
                task_labels: dict[str, str] | None = None) -> MultiTaskModel:
    """The model section's kind (registry.MODEL_KINDS), seeded. `task_labels` (task ->
    label kind) is what model.heads: label groups heads by."""
    head_of = None
    if model.heads == "label":
        if task_labels is None:
            raise ValueError("model.heads: label needs each task's label kind")
        head_of = {t: task_labels[t] for t in task_classes}
    build = registry.load(registry.MODEL_KINDS[model.kind])
    torch.manual_seed(seed)
    if head_of is None:  # the model kinds that share no heads keep their own signature
        return build(model, task_classes, data_meta)
    return build(model, task_classes, data_meta, head_of)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What checkpoints and deltas store: the trainable parameters, by name."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            own[name].copy_(value)
