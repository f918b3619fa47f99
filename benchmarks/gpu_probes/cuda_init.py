"""CUDA initialisation: the first tensor on the GPU, after `import torch`."""

import time

import torch

from benchmarks.gpu_probes import report


def main() -> None:
    t = time.perf_counter()
    torch.zeros(1, device="cuda").add_(1)
    torch.cuda.synchronize()
    report(time.perf_counter() - t, heavy=False)


if __name__ == "__main__":
    main()
