"""The one registry of model kinds: a shared trunk plus one head per task."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .device import autocast


class MultiTaskModel(nn.Module):
    """Shared trunk -> features; heads[task] -> logits. Parameter names are
    `trunk.*` and `heads.<task>.*`, which is what deltas and checkpoints are keyed by."""

    # train.precision bf16: forward passes under autocast (device.place sets it). Outputs
    # come back as float32, so losses, α and metrics are computed in float32 as with fp32.
    autocast_dtype: torch.dtype | None = None

    def __init__(self, trunk: nn.Module, feature_dim: int, task_classes: dict[str, int]):
        super().__init__()
        self.trunk = trunk
        self.heads = nn.ModuleDict({t: nn.Linear(feature_dim, c) for t, c in task_classes.items()})

    def features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.autocast_dtype is None:
            return self.trunk(inputs)
        with autocast(self.autocast_dtype, _device_type(inputs)):
            out = self.trunk(inputs)
        return out.float()

    def forward(self, inputs: dict[str, torch.Tensor], task: str) -> torch.Tensor:
        if self.autocast_dtype is None:
            return self.heads[task](self.trunk(inputs))
        with autocast(self.autocast_dtype, _device_type(inputs)):
            logits = self.heads[task](self.trunk(inputs))
        return logits.float()


def _device_type(inputs: dict[str, torch.Tensor]) -> str:
    return next(iter(inputs.values())).device.type


class SmallCNN(nn.Module):
    """LeNet-style trunk for MultiMNIST (no batch norm: every weight is a parameter, so a
    delta captures everything a fine-tune changed)."""

    def __init__(self, image_size: int, channels: list[int], hidden: int):
        super().__init__()
        layers: list[nn.Module] = []
        c_in, side = 1, image_size
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)]
            c_in, side = c_out, side // 2
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, hidden), nn.ReLU())
        self.out_dim = hidden

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # follow the weights' dtype, so a float64 copy of the model runs end to end
        x = inputs["images"].to(self.conv[0].weight.dtype) / 255.0
        return self.fc(self.conv(x))


def build_cnn(model_params: dict, task_classes: dict[str, int], data_meta: dict) -> MultiTaskModel:
    trunk = SmallCNN(data_meta["image_size"], list(model_params.get("channels", [16, 32])),
                     int(model_params.get("hidden", 64)))
    return MultiTaskModel(trunk, trunk.out_dim, task_classes)


def build_transformer(model_params: dict, task_classes: dict[str, int],
                      data_meta: dict) -> MultiTaskModel:
    from .nlu.model import build_transformer_model  # optional: imports transformers

    return build_transformer_model(model_params, task_classes, data_meta)


MODEL_KINDS: dict[str, Callable[[dict, dict[str, int], dict], MultiTaskModel]] = {
    "cnn": build_cnn,
    "transformer": build_transformer,
}


def build_model(model_params: dict, task_classes: dict[str, int], data_meta: dict,
                seed: int) -> MultiTaskModel:
    torch.manual_seed(seed)
    return MODEL_KINDS[model_params["kind"]](model_params, task_classes, data_meta)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What checkpoints and deltas store: the trainable parameters, by name."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            own[name].copy_(value)
