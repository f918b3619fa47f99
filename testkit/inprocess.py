"""Every stage function of dvc.yaml called in one Python process, in the order `dvc repro`
runs them: the same artifacts without DVC or a process per stage (no `import torch`, no
dvc.lock rewrite per stage). What a study through DVC is measured and checked against."""

from __future__ import annotations

from contextlib import chdir
from pathlib import Path

import yaml


def run_stages(raw: dict, folder: Path) -> dict:
    """Write `raw` as folder/params.yaml and run every stage in `folder`; returns
    metrics/summary.json."""
    from alphavil import pipeline
    from alphavil.config import validate
    from alphavil.data.prepared import _load_split_file
    from alphavil.store.artifacts import read_json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = validate(raw)
    with chdir(folder):
        _load_split_file.cache_clear()  # prepared splits are cached by path, per process
        pipeline.prepare(params)
        for seed in params.seeds:
            pipeline.train_base(seed, params)
            for ep in params.epochs:
                given = dict(ep.given)
                for task in params.tasks:
                    pipeline.finetune(seed, ep.id, task, given, params)
                pipeline.estimate_alpha(seed, ep.id, given, params)
                pipeline.merge(seed, ep.id, given, params)
            for method in params.baselines:
                pipeline.train_method(method, seed, params)
        pipeline.evaluate(params)
        summary = read_json("metrics/summary.json")
        _load_split_file.cache_clear()
    return summary


def counted_epoch(method: str) -> tuple[list[tuple[str, int]], dict, dict]:
    """One epoch of `method` on ./params.yaml, seed 0: the (task, rows) of every forward
    pass that is backpropagated (autograd on), the method's state after it and θ."""
    import torch

    from alphavil.config import load_params
    from alphavil.methods import get_method
    from alphavil.models.multitask import trainable_state
    from alphavil.training.context import RunContext

    ctx = RunContext.build(load_params("params.yaml"), seed=0)
    seen = []
    forward = ctx.model.forward

    def counting(inputs, task):
        out = forward(inputs, task)
        if torch.is_grad_enabled():
            seen.append((task, len(out)))
        return out

    ctx.model.forward = counting
    m = get_method(method)(ctx)
    theta, state = m.run_epoch(ctx.params.epochs[0], trainable_state(ctx.model),
                               m.initial_state())
    return seen, state, theta
