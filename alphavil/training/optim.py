"""SGD (momentum), Adam and AdamW as plain tensor updates on the CPU, and as torch.optim's
fused kernels on a GPU.

Why not the torch.optim classes: the first `torch.optim.Optimizer` built in a process
imports torch's compiler stack (torch._dynamo): `add_param_group`, `zero_grad` and
`step` are wrapped in `torch._disable_dynamo`, which imports it on first call. That is
about 1.4 s here and 7.8 s on the H200 machine (docs/performance.md), and every stage of
the pipeline is a fresh process that builds an optimizer. The CPU classes below follow
torch.optim's single-tensor formulas step for step. On a GPU one kernel per tensor and
formula step would be slow, so `Fused` calls torch.optim's functional API with
fused=True (torch._fused_adam_ / _fused_adamw_ / _fused_sgd_: one launch per step for
all tensors), which does not touch torch._dynamo. tests/test_optim.py checks both
against torch.optim.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

from alphavil import registry


class Optimizer:
    def __init__(self, params: Iterable[torch.Tensor], lr: float):
        self.params = [p for p in params]
        self.lr = lr
        # per-parameter step counts, as torch.optim keeps them: a parameter counts only the
        # steps it had a gradient in (a task head in joint training misses most of them), so
        # Adam's bias correction follows its own updates, not the optimizer's
        self.t: dict[int, int] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self.t[i] = self.t.get(i, 0) + 1
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
        bias1 = 1 - self.b1 ** self.t[i]
        bias2_sqrt = math.sqrt(1 - self.b2 ** self.t[i])
        denom = (v.sqrt() / bias2_sqrt).add_(self.eps)
        p.addcdiv_(m, denom, value=-self.lr / bias1)


class Fused:
    """torch.optim's fused Adam / AdamW / SGD through its functional API, with the same
    hyperparameters as the classes above. Parameters without a gradient are skipped
    and get no state, as in torch.optim."""

    def __init__(self, name: str, params: Iterable[torch.Tensor], lr: float):
        self.name = name
        self.params = [p for p in params]
        self.lr = lr
        self.state: dict[int, list] = {}  # index -> per-parameter state tensors

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        from torch.optim import adam, adamw, sgd

        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        params = [self.params[i] for i in live]
        grads = [p.grad for p in params]
        if self.name == "sgd":
            # The kernel starts every buffer at g when given none at all (its first step),
            # so parameters on their first step (a head whose task had no batch yet, in
            # joint training) go in a call of their own.
            for first in (False, True):
                group = [i for i in live if (i not in self.state) == first]
                if not group:
                    continue
                bufs = [self.state[i][0] if not first else None for i in group]
                sgd.sgd([self.params[i] for i in group], [self.params[i].grad for i in group],
                        bufs, fused=True, weight_decay=0.0, momentum=0.9, lr=self.lr,
                        dampening=0.0, nesterov=False, maximize=False)
                for i, b in zip(group, bufs):
                    self.state[i] = [b]
            return
        for i, p in zip(live, params):
            if i not in self.state:
                # float32 step counts on the device, as torch.optim keeps them for fused
                self.state[i] = [torch.zeros_like(p), torch.zeros_like(p),
                                 torch.zeros((), dtype=torch.float32, device=p.device)]
        m, v, steps = ([self.state[i][k] for i in live] for k in range(3))
        fn, decay = (adamw.adamw, 0.01) if self.name == "adamw" else (adam.adam, 0.0)
        fn(params, grads, m, v, [], steps, fused=True, amsgrad=False, beta1=0.9, beta2=0.999,
           lr=self.lr, weight_decay=decay, eps=1e-8, maximize=False)


def make(name: str, params: Iterable[torch.Tensor], lr: float,
         fused: bool = False) -> Optimizer | Fused:
    """train.optimizer / alpha.optimizer by name (registry.OPTIMIZERS)."""
    name = name.lower()
    if fused and name in registry.OPTIMIZERS:
        return Fused(name, params, lr)
    if name == "sgd":
        return SGD(params, lr, momentum=0.9)
    if name == "adam":
        return Adam(params, lr)
    if name == "adamw":
        return Adam(params, lr, weight_decay=0.01)
    raise ValueError(f"optimizer: expected one of {', '.join(registry.OPTIMIZERS)}, "
                     f"got {name!r}")
