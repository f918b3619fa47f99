"""The first torch.optim.Adam (fused on CUDA), built and stepped: does its first use import
the compiler stack? `python -m benchmarks.gpu_probes.torch_adam cuda|cpu`"""

import sys

import torch

from benchmarks.gpu_probes import time_first_step


def main(device: str) -> None:
    time_first_step(device, lambda p, dev: torch.optim.Adam(
        p, lr=1e-3, fused=dev.type == "cuda" or None))


if __name__ == "__main__":
    main(sys.argv[1])
