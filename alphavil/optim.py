"""SGD (momentum), Adam and AdamW as plain tensor updates.

Why not torch.optim: in torch 2.13 the first `torch.optim.Optimizer` built in a process
imports torch's compiler stack (torch._dynamo), about 1.4 s. Every stage of the pipeline
is a fresh process that builds an optimizer, so that import alone added minutes to the
default run. These follow torch.optim's single-tensor formulas step for step;
tests/test_optim.py checks them against torch.optim.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch


class Optimizer:
    def __init__(self, params: Iterable[torch.Tensor], lr: float):
        self.params = [p for p in params]
        self.lr = lr
        self.t = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self._update(i, p, p.grad)

    def _update(self, i: int, p: torch.Tensor, g: torch.Tensor) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.9):
        super().__init__(params, lr)
        self.momentum = momentum
        self.buf: dict[int, torch.Tensor] = {}

    def _update(self, i, p, g):
        if self.momentum:
            if i not in self.buf:
                self.buf[i] = g.clone()
            else:
                self.buf[i].mul_(self.momentum).add_(g)
            g = self.buf[i]
        p.add_(g, alpha=-self.lr)


class Adam(Optimizer):
    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.b1, self.b2 = betas
        self.eps = eps
        self.weight_decay = weight_decay  # decoupled (AdamW) when > 0
        self.m: dict[int, torch.Tensor] = {}
        self.v: dict[int, torch.Tensor] = {}

    def _update(self, i, p, g):
        if i not in self.m:
            self.m[i] = torch.zeros_like(p)
            self.v[i] = torch.zeros_like(p)
        if self.weight_decay:
            p.mul_(1 - self.lr * self.weight_decay)
        m, v = self.m[i], self.v[i]
        m.lerp_(g, 1 - self.b1)
        v.mul_(self.b2).addcmul_(g, g.conj(), value=1 - self.b2)
        bias1 = 1 - self.b1 ** self.t
        bias2_sqrt = math.sqrt(1 - self.b2 ** self.t)
        denom = (v.sqrt() / bias2_sqrt).add_(self.eps)
        p.addcdiv_(m, denom, value=-self.lr / bias1)


def make(name: str, params: Iterable[torch.Tensor], lr: float) -> Optimizer:
    name = name.lower()
    if name == "sgd":
        return SGD(params, lr, momentum=0.9)
    if name == "adam":
        return Adam(params, lr)
    if name == "adamw":
        return Adam(params, lr, weight_decay=0.01)
    raise ValueError(f"optimizer: expected one of sgd, adam, adamw, got {name!r}")
