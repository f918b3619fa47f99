"""`from dvclive import Live` after `import torch`: the step logger's first use."""

import time

import torch  # noqa: F401  (imported first, as in a stage)

from benchmarks.gpu_probes import report


def main() -> None:
    t = time.perf_counter()
    from dvclive import Live  # noqa: F401

    report(time.perf_counter() - t)


if __name__ == "__main__":
    main()
