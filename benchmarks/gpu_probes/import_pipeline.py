"""`import alphavil.pipeline` after `import torch`: what every stage imports on top."""

import time

import torch  # noqa: F401  (imported first: only what the pipeline adds is timed)

from benchmarks.gpu_probes import report


def main() -> None:
    t = time.perf_counter()
    import alphavil.pipeline  # noqa: F401

    report(time.perf_counter() - t)


if __name__ == "__main__":
    main()
