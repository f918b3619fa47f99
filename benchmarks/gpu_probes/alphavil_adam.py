"""The first alphavil fused Adam (alphavil.training.optim), imported, built and stepped.
`python -m benchmarks.gpu_probes.alphavil_adam cuda|cpu`"""

import sys

import torch  # noqa: F401  (imported first, as in a stage)

from benchmarks.gpu_probes import time_first_step


def _build(p, dev):
    from alphavil.training.optim import make  # its import is part of the first use

    return make("adam", p, 1e-3, fused=True)


def main(device: str) -> None:
    time_first_step(device, _build)


if __name__ == "__main__":
    main(sys.argv[1])
