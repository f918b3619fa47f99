"""How far one fine-tune moves θ at task weight w, relative to w = 1, per optimizer and
`alphavil.weight_mode` (the table in docs/algorithm.md, "How the weight acts").

Run from a workspace where `dvc repro` has made data/prepared and checkpoints/s0/base:

    python -m benchmarks.weight_modes

Prints ‖δ(w)‖ / ‖δ(1)‖ and the cosine between δ(w) and δ(1): seed 0's θ_0, task `left`,
ρ = 0.3, batch 32, the same batches at every w.
"""

from __future__ import annotations

import json

import torch

from alphavil.store.artifacts import load_checkpoint
from alphavil.config import load_params
from alphavil.training.context import RunContext
from alphavil.methods.deltas import finetune_task
from alphavil.runtime.seeding import generator, set_determinism

OPTIMIZERS = {"adam": 1e-3, "adamw": 1e-3, "sgd": 0.05}


def _norm(d: dict) -> float:
    return float(torch.sqrt(sum((v.double() ** 2).sum() for v in d.values())))


def main() -> None:
    set_determinism(0)
    ctx = RunContext.build(load_params("params.yaml"), 0)
    theta, _ = load_checkpoint("checkpoints/s0/base")

    def delta(w: float, optimizer: str, mode: str) -> dict:
        d, _ = finetune_task(ctx.model, theta, ctx.split("train", "left"), "left", weight=w,
                             ratio=0.3, batch_size=32, optimizer=optimizer,
                             lr=OPTIMIZERS[optimizer], g=generator(0, "ep0", "left", "sample"),
                             where="weight_modes", delta_dtype=torch.float64, weight_mode=mode)
        return d

    out = {}
    for optimizer in OPTIMIZERS:
        for mode in ("loss", "step"):
            ref = delta(1.0, optimizer, mode)
            for w in (0.5, 0.1):
                d = delta(w, optimizer, mode)
                cos = float(sum((d[n] * ref[n]).sum() for n in d)) / (_norm(d) * _norm(ref))
                out[f"{optimizer} {mode} w={w}"] = {"norm_ratio": round(_norm(d) / _norm(ref), 3),
                                                    "cosine": round(cos, 3)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
