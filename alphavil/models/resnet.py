"""model.kind `resnet`: a small ResNet-style trunk (basic residual blocks, He et al. 2016)
for `setting: images`, RGB or grey.

Written here rather than taken from torchvision: the pinned torch (2.13, CPU wheel) has no
matching torchvision on PyPI; the one pip resolves fails at import with "operator
torchvision::nms does not exist", and a ResNet-18 is far larger than the few-image tasks
this setting is for. Group norm instead of batch norm: batch norm's running statistics are
buffers, not parameters, so a delta (and α's merge of deltas) would miss what a fine-tune
changed in them; group norm has only weights and biases, all in every delta.
"""

from __future__ import annotations

import torch
from torch import nn

from alphavil.models.multitask import MultiTaskModel, Standardise


def _norm(channels: int) -> nn.GroupNorm:
    # up to 8 groups that divide the width (1 group for odd widths: layer norm over C,H,W)
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class BasicBlock(nn.Module):
    """conv3x3-norm-relu-conv3x3-norm, plus the input (a strided 1x1 conv where the side
    or width changes), then relu."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), _norm(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), _norm(c_out))
        self.skip = (nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), _norm(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class SmallResNet(nn.Module):
    """A 3x3 stem at channels[0], one stage of `blocks` blocks per entry of `channels` (the
    first at full side, each later one halving it), global average pooling, then one hidden
    layer of `hidden` features (as the CNN's)."""

    def __init__(self, in_channels: int, channels: list[int], blocks: int, hidden: int,
                 meta: dict):
        super().__init__()
        self.pixels = Standardise(meta)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels[0], 3, 1, 1, bias=False),
                                  _norm(channels[0]), nn.ReLU())
        stages, c_in = [], channels[0]
        for i, c_out in enumerate(channels):
            for b in range(blocks):
                stages.append(BasicBlock(c_in, c_out, 2 if i > 0 and b == 0 else 1))
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c_in, hidden), nn.ReLU())
        self.out_dim = hidden

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.pixels(inputs["images"], self.stem[0].weight.dtype)
        x = self.stages(self.stem(x))
        return self.fc(x.mean(dim=(2, 3)))


def build_resnet(model, task_classes: dict[str, int], data_meta: dict) -> MultiTaskModel:
    """`model`: the images model section (config.images.ImagesModel)."""
    trunk = SmallResNet(int(data_meta.get("channels", 1)), list(model.channels),
                        int(model.blocks), int(model.hidden), data_meta)
    return MultiTaskModel(trunk, trunk.out_dim, task_classes)
