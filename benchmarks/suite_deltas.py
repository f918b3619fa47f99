"""What each task's fine-tune change does to the target, at one epoch of a finished run.

    python -m benchmarks.suite_deltas [--epoch ep0] [--seeds 5 6 ...]

Run in a workspace whose αVIL deltas, checkpoints and α files exist (after `make run` or a
study). Per task and seed, on the target's dev split (the data α is fitted on):
  - trunk: ‖δ_k‖ over the shared trunk (an auxiliary task's head never touches the
    target's output, so its trunk change is all that α_k can act through);
  - cos: cosine of δ_k's trunk change with the dev loss's descent direction −∇L(θ) at
    the epoch's θ, over the trunk: does the task move the trunk downhill for the target?
  - ΔL: L(θ + δ_target + δ_k) − L(θ + δ_target), adding the task's whole change at α = 1
    to the target's own step (negative: it helps on top of the target's step);
  - α: what αVIL fitted for the task that epoch.
Prints a markdown table of means over seeds (with the roles from params.yaml) and one row
per seed as JSON lines on stderr-free stdout after it.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from torch.func import functional_call

from alphavil.store import layout
from alphavil.store.artifacts import checkpoint_digest, load_checkpoint, load_delta, read_json
from alphavil.config import load_params
from alphavil.training.context import RunContext
from alphavil.methods.deltas import merge
from alphavil.runtime.seeding import set_determinism
from alphavil.training.loop import evaluate, task_loss


def trunk(d: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.double().flatten() for n, v in sorted(d.items()) if n.startswith("trunk.")])


def dev_gradient(ctx: RunContext, theta: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    dev = ctx.split("dev", ctx.target)
    params = {n: v.detach().clone().requires_grad_(True) for n, v in theta.items()}
    inputs, labels = dev.batch(torch.arange(len(dev)))
    loss = task_loss(functional_call(ctx.model, params, (inputs, ctx.target)), labels).mean()
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {n: (g if g is not None else torch.zeros_like(params[n]))
            for n, g in zip(params, grads)}


def measure(params, seed: int, epoch_id: str) -> list[dict]:
    set_determinism(seed)
    ctx = RunContext.build(params, seed)
    epoch = params.epoch(epoch_id)
    folder = layout.checkpoint_dir("alphavil", seed, epoch.prev)
    theta, _ = load_checkpoint(folder, seed=seed, epoch=epoch.prev)
    digest = checkpoint_digest(folder)
    deltas = {t: load_delta(layout.delta_path(seed, epoch_id, t), theta, digest, task=t,
                            epoch=epoch_id)[0] for t in params.tasks}
    alphas = read_json(layout.alpha_path(seed, epoch_id))["alpha"]
    dev = ctx.split("dev", ctx.target)
    descent = -trunk(dev_gradient(ctx, theta))
    own = merge(theta, [(1.0, deltas[ctx.target])])
    at_own = evaluate(ctx.model, dev, ctx.target, params=own)["loss"]
    rows = []
    for t, d in deltas.items():
        tr = trunk(d)
        norm = float(tr.norm())
        cos = float(tr @ descent / (norm * descent.norm())) if norm > 0 else 0.0
        row = {"seed": seed, "task": t, "role": params.tasks[t].role or
               ("target" if t == ctx.target else None), "trunk": norm, "cos": cos,
               "alpha": alphas.get(t)}
        if t != ctx.target:
            both = merge(theta, [(1.0, deltas[ctx.target]), (1.0, d)])
            row["dL"] = evaluate(ctx.model, dev, ctx.target, params=both)["loss"] - at_own
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epoch", default="ep0")
    ap.add_argument("--seeds", type=int, nargs="*")
    args = ap.parse_args(argv)
    params = load_params("params.yaml")
    rows = [r for s in (args.seeds or params.seeds) for r in measure(params, s, args.epoch)]
    print(f"| task | role | ‖δ trunk‖ | cos(δ trunk, −∇L_dev) | ΔL_dev added to target's step | α |")
    print("|---|---|---|---|---|---|")
    for t in params.tasks:
        rs = [r for r in rows if r["task"] == t]
        mean = lambda k: statistics.mean(r[k] for r in rs if r.get(k) is not None)  # noqa
        dl = f"{mean('dL'):+.4f}" if t != params.target else "–"
        al = [r["alpha"] for r in rs if r["alpha"] is not None]
        a = f"{statistics.mean(al):.3f} ({len(al)}/{len(rs)})" if al else "–"
        print(f"| {t} | {rs[0]['role']} | {mean('trunk'):.2f} | {mean('cos'):+.3f} | {dl} | {a} |")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
