"""Data-parallel training under `torchrun` / `accelerate launch` (docs/scale-out.md).

Without a launcher nothing here does anything and the single-process path is unchanged.
Under a launcher (WORLD_SIZE > 1 in the environment) every rank runs the same stage on
the same data: each takes its contiguous share of every batch, gradients are summed
over ranks, and only rank 0 writes artifacts and logs. The per-rank loss is the shard's
loss sum divided by the *global* batch size, so the summed gradient is the full-batch
mean gradient whatever the shard sizes (the last batch may not split evenly).

The model stays an ordinary module (no DistributedDataParallel wrapper): deltas,
checkpoints and `functional_call` keep their parameter names, and one explicit
all-reduce per step over the parameters that received a gradient is all DDP would do here.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """The one process that writes artifacts (every process when not distributed)."""
    return rank() == 0


def init_from_env() -> bool:
    """Join the process group a launcher describes in the environment; False if none."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        # The models and data here live on the CPU, so gloo is the backend everywhere;
        # it also runs across nodes.
        dist.init_process_group(backend=os.environ.get("ALPHAVIL_DIST_BACKEND", "gloo"))
    if is_main():
        print(f"alphavil: data-parallel over {world_size()} processes "
              f"({dist.get_backend()})", file=sys.stderr, flush=True)
    return True


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # rank 0 may still be writing; nobody leaves before it is done
        dist.destroy_process_group()


def shard(n: int) -> slice:
    """This rank's contiguous share of a batch of n examples (may be empty)."""
    r, w = rank(), world_size()
    return slice(n * r // w, n * (r + 1) // w)


def all_reduce_sum_(tensors: list[torch.Tensor]) -> None:
    """Sum each tensor over ranks in place, with one collective call for all of them."""
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1).to(torch.float64) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset:offset + n].view_as(t))
        offset += n
