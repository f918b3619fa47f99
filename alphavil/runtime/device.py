"""Where a stage computes: `train.device` (cpu | cuda | auto) and `train.precision`
(fp32 | bf16 autocast); docs/scale-out.md, "GPU".

Only compute moves. Artifacts are read onto the CPU (safetensors) and moved here, and are
written from contiguous CPU copies (artifacts.save_tensors), so a checkpoint or delta
made on a GPU loads and merges on a CPU and the reverse.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn

from alphavil import registry
from alphavil.config import ParamsError

# train.precision -> the dtype forward passes autocast to (None: none)
AUTOCAST_DTYPES = {name: dtype and getattr(torch, dtype)
                   for name, dtype in registry.PRECISIONS.items()}


@dataclass(frozen=True)
class Compute:
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return AUTOCAST_DTYPES[self.precision]


CPU = Compute()


def resolve(name: str) -> torch.device:
    """cpu, cuda, or auto (cuda where torch sees a CUDA device, else cpu)."""
    if name not in registry.DEVICES:
        raise ParamsError(f"train.device: expected one of {list(registry.DEVICES)}, "
                          f"got {name!r}")
    if name == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        from alphavil.runtime import distributed

        if distributed.active():
            # every rank would pick cuda:0, and the all-reduce is gloo on CPU tensors
            raise ParamsError("train.device: cuda under a data-parallel launcher is not "
                              "implemented (docs/scale-out.md); set train.device: cpu")
        return torch.device("cuda")
    if name == "auto":
        return torch.device("cpu")
    raise ParamsError(f"train.device: 'cuda' needs a CUDA device, but torch "
                      f"{torch.__version__} sees none; set train.device to cpu or auto")


def from_params(params) -> Compute:
    return Compute(resolve(params.train.device), params.train.precision)


# seconds this process spent initialising CUDA (alphavil.runtime.stagetime reports it)
cuda_init_seconds = 0.0


def init(compute: Compute) -> None:
    """Make a CUDA device deterministic and initialise it (once per process, here, so
    the stage timing can tell CUDA's start-up from compute). Nothing on the CPU."""
    global cuda_init_seconds
    if compute.device.type != "cuda" or cuda_init_seconds:
        return
    t = time.perf_counter()
    deterministic_cuda()
    torch.zeros(1, device=compute.device).add_(1)
    torch.cuda.synchronize(compute.device)
    cuda_init_seconds = time.perf_counter() - t


def deterministic_cuda(on: bool = True) -> None:
    """Same params and seed -> the same bytes on one GPU machine (as on the CPU).

    - deterministic algorithms: the eager half of torch.use_deterministic_algorithms.
      That public call also sets an Inductor flag (torch.compile is not used here) and
      imports torch._inductor, and with it the compiler stack: seconds per stage.
    - cuBLAS needs a fixed workspace for deterministic matrix products; it reads
      CUBLAS_WORKSPACE_CONFIG when its handle is created, so before the first product.
    - cuDNN: deterministic convolution algorithms, no benchmark-chosen ones.
    - TF32 off: train.precision fp32 means IEEE fp32 on the GPU too (cuDNN convolutions
      use TF32 by default on Ampere and later), so CPU and GPU agree to rounding.
    """
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    set_flag = getattr(torch._C, "_set_deterministic_algorithms", None)
    if set_flag is not None:
        set_flag(on)
    else:  # pragma: no cover - every torch this project supports has it
        torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def move(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A params dict (θ, a delta) on `device`; the same tensors where they already are."""
    return {k: v.to(device) for k, v in tensors.items()}


def place(model: nn.Module, compute: Compute) -> nn.Module:
    """The model on the device, computing its forward passes at the precision."""
    model.to(compute.device)
    model.autocast_dtype = compute.autocast_dtype
    return model


def autocast(dtype: torch.dtype | None, device_type: str):
    """bf16 autocast around a forward pass; nothing at all for fp32."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type, dtype=dtype)
