"""`from transformers import AutoModel` after `import torch` (what an NLU stage adds)."""

import time

import torch  # noqa: F401  (imported first, as in a stage)

from benchmarks.gpu_probes import report


def main() -> None:
    t = time.perf_counter()
    from transformers import AutoModel  # noqa: F401

    report(time.perf_counter() - t)


if __name__ == "__main__":
    main()
