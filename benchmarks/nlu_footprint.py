"""Measure what the NLU delta choices cost and change (the numbers in docs/nlu.md).

  python -m benchmarks.nlu_footprint [--params params.yaml] [--seed 0] [--skip-effect]

1. Bytes: for each trainable set (all weights / word embeddings frozen / top
   model.train_layers layers / with model.lora set, its adapters in those layers and in
   all layers) and each delta dtype, the size of a real delta file written by
   artifacts.save_delta, and × tasks = bytes per αVIL epoch.
2. Effect (the configured trainable set): one αVIL epoch from checkpoints/s<seed>/base:
   every task fine-tuned once, deltas kept exactly (float64), then α estimation and the
   merge repeated with the deltas rounded to float32 and to bfloat16. Reports α, the
   merged model's target dev metrics, and the largest weight difference between merges.
Needs data/prepared and checkpoints/s<seed>/base (run the pipeline to train_base first).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from alphavil.store import layout
from alphavil.store.artifacts import load_checkpoint, save_delta
from alphavil.config import load_params
from alphavil.training.context import RunContext
from alphavil.methods.deltas import estimate_alpha, finetune_task, merge
from alphavil.models.multitask import build_model, load_trainable
from alphavil.runtime.seeding import generator, set_determinism
from alphavil.training.loop import evaluate

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def delta_bytes(model, task: str, dtype: torch.dtype) -> int:
    names = [n for n, p in model.named_parameters()
             if p.requires_grad and (n.startswith("trunk.") or n.startswith(f"heads.{task}."))]
    own = dict(model.named_parameters())
    delta = {n: torch.zeros_like(own[n], dtype=dtype) for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.safetensors"
        save_delta(path, delta, task=task, epoch="ep0", base_digest="0" * 16, examples=0)
        return path.stat().st_size


def sizes(params) -> list[dict]:
    ctx_meta = RunContext.build(params, params.seeds[0]).meta
    m = params.model

    def variant(model, **change):
        return model.model_copy(update=change)

    plain = variant(m, lora=None)
    variants = {
        "all weights": variant(plain, freeze_embeddings=False, train_layers=None),
        "word embeddings frozen": variant(plain, freeze_embeddings=True, train_layers=None),
        f"top {m.train_layers} layers": variant(plain, freeze_embeddings=True),
    }
    lora = m.lora
    if lora:  # the configured adapters, in the configured layers and in all of them
        name = f"LoRA r{lora.rank} on {'+'.join(lora.targets)}"
        if m.train_layers is not None:
            variants[f"{name}, top {m.train_layers} layers"] = m
        variants[f"{name}, all layers"] = variant(m, train_layers=None)
    classes = {t: ctx_meta["tasks"][t]["num_classes"] for t in params.tasks}
    rows = []
    for label, mp in variants.items():
        if label.startswith("top") and mp.train_layers is None:
            continue
        model = build_model(mp, classes, ctx_meta, 0)
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        for dname, dt in DTYPES.items():
            per_task = [delta_bytes(model, t, dt) for t in params.tasks]
            rows.append({"trainable": label, "trainable_params": n, "delta_dtype": dname,
                         "delta_bytes_per_task": per_task[0],
                         "bytes_per_epoch": sum(per_task)})
    return rows


def effect(params, seed: int) -> dict:
    set_determinism(seed)
    ctx = RunContext.build(params, seed)
    theta, state = load_checkpoint(layout.base_dir(seed), seed=seed, method="base",
                                   epoch="base")
    p = params.for_epoch(params.epochs[0].id)
    exact = {}
    for task in ctx.tasks:
        exact[task], _ = finetune_task(
            ctx.model, theta, ctx.split("train", task), task, weight=1.0,
            ratio=p.alphavil.sample_ratio, batch_size=p.train.batch_size,
            optimizer=p.train.optimizer, lr=p.train.lr,
            g=generator(seed, params.epochs[0].id, task, "sample"), where=f"footprint {task}",
            delta_dtype=torch.float64)
    dev = ctx.split("dev", ctx.target)
    a = p.alpha
    out, merged = {}, {}
    for dname, dt in {"float64": torch.float64, **DTYPES}.items():
        deltas = [{n: v.to(dt) for n, v in exact[t].items()} for t in ctx.tasks]
        alphas, _ = estimate_alpha(ctx.model, theta, deltas, dev, ctx.target, init=a.init,
                                   steps=a.steps, lr=a.lr, optimizer=a.optimizer,
                                   batch_size=a.batch_size,
                                   g=generator(seed, params.epochs[0].id, "alpha"),
                                   where="footprint α")
        merged[dname] = merge(theta, zip(alphas, deltas))
        load_trainable(ctx.model, merged[dname])
        out[dname] = {"alpha": dict(zip(ctx.tasks, [round(x, 5) for x in alphas])),
                      "target_dev": evaluate(ctx.model, dev, ctx.target)}
    for dname in DTYPES:
        out[dname]["max_weight_diff_vs_float64"] = max(
            float((merged[dname][n].double() - merged["float64"][n].double()).abs().max())
            for n in merged["float64"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-effect", action="store_true")
    args = ap.parse_args()
    params = load_params(args.params)
    report = {"sizes": sizes(params)}
    if not args.skip_effect:
        report["effect"] = effect(params, args.seed)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
