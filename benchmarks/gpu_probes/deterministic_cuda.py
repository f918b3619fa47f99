"""alphavil.runtime.device.deterministic_cuda(): the settings every stage applies, timed."""

import time

import torch  # noqa: F401  (imported first, as in a stage)

from alphavil.runtime.device import deterministic_cuda
from benchmarks.gpu_probes import report


def main() -> None:
    t = time.perf_counter()
    deterministic_cuda()
    report(time.perf_counter() - t)


if __name__ == "__main__":
    main()
