"""torch.use_deterministic_algorithms(True): its cost, and whether it imports the compiler
stack."""

import time

import torch

from benchmarks.gpu_probes import report


def main() -> None:
    t = time.perf_counter()
    torch.use_deterministic_algorithms(True)
    report(time.perf_counter() - t)


if __name__ == "__main__":
    main()
