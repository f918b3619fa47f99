"""`import torch`, timed from inside a fresh process."""

import time


def main() -> None:
    t = time.perf_counter()
    import torch  # noqa: F401

    from benchmarks.gpu_probes import report

    report(time.perf_counter() - t, heavy=False)


if __name__ == "__main__":
    main()
