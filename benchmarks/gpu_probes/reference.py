"""Child `reference`: the pipeline's stages run in this one process on the CPU, what
benchmarks/gpu_check.py compares a device's `dvc repro` with."""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml

from benchmarks.gpu_probes import run_child
from benchmarks.gpu_results import collect


def child_reference(workdir: str, raw: dict) -> dict:
    """Every stage of the pipeline, in dvc.yaml's order, in this one process."""
    from alphavil import pipeline
    from alphavil.config import load_params

    os.chdir(workdir)
    Path("params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    t = time.perf_counter()
    pipeline.prepare()
    params = load_params()
    for seed in params.seeds:
        pipeline.train_base(seed)
        for ep in params.epochs:
            for task in params.tasks:
                pipeline.finetune(seed, ep.id, task, ep.given)
            pipeline.estimate_alpha(seed, ep.id, ep.given)
            pipeline.merge(seed, ep.id, ep.given)
        for method in params.methods[1:]:
            pipeline.train_method(method, seed)
    pipeline.evaluate()
    return {"seconds": time.perf_counter() - t, **collect(Path("."))}


if __name__ == "__main__":
    run_child(child_reference)
