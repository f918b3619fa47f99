"""What each DVC stage does. Stage scripts in stages/ parse arguments and call these."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from alphavil.runtime import distributed
from alphavil.store import layout
from alphavil.artifact_checks import (check_reported_state, check_weights, delta_paths,
                                      diverged_epoch, read_alpha_record)
from alphavil.store.artifacts import (check_compatible, checkpoint_digest, load_checkpoint,
                                      load_delta, save_checkpoint, save_delta, write_json)
from alphavil.config import Params, ParamsError, as_params, check_data_source
from alphavil.training.context import RunContext
from alphavil.methods.deltas import merge_accepted
from alphavil.runtime.device import CPU, Compute, move
from alphavil.methods import METHODS, get_method
from alphavil.registry import BASELINES
from alphavil.methods.alphavil import AlphaVIL
from alphavil.methods.joint import warm_up
from alphavil.models.multitask import load_trainable, trainable_state
from alphavil.runtime.seeding import set_determinism
from alphavil.runtime.steplog import say, step_logger


# Each stage takes the validated Params (what cli.run passes) or the path of params.yaml.
ParamsOrPath = Params | str | Path


def _start(seed: int, params: ParamsOrPath) -> Params:
    params = as_params(params)
    if seed not in params.seeds:
        raise ParamsError(f"seed {seed} is not in params.yaml seeds {params.seeds}")
    set_determinism(seed)
    return params


def check_epoch_args(params: Params, epoch_id: str, cli_overrides: dict) -> None:
    """The cmd line carries the epoch's overrides only so DVC sees them change; they must
    agree with params.yaml, the single source of knobs."""
    own = params.epoch(epoch_id).given
    given = {k: v for k, v in cli_overrides.items() if v is not None}
    agree = set(given) == set(own) and all(float(given[k]) == float(own[k]) for k in given)
    if not agree:
        raise ParamsError(f"epoch {epoch_id}: dvc.yaml passed overrides {given} but params.yaml "
                          f"has {own}; run `dvc repro` so the command is re-rendered")


def _load_prev(ctx: RunContext, method: str, epoch_id: str) -> tuple[dict, dict, str]:
    """θ of a checkpoint, read on the CPU and moved to the stage's device."""
    folder = layout.checkpoint_dir(method, ctx.seed, epoch_id)
    theta, state = load_checkpoint(folder, seed=ctx.seed, epoch=epoch_id,
                                   method="base" if epoch_id == "base" else method)
    check_compatible(str(folder), theta, trainable_state(ctx.model), subset=False)
    return move(theta, ctx.compute.device), state, checkpoint_digest(folder)


def _epoch_stage(seed: int, epoch_id: str, cli_overrides: dict, params: ParamsOrPath,
                 compute: Compute | None = None):
    """What every αVIL epoch stage starts from: validated params, the epoch, the run
    context and θ of the previous epoch (with its digest, which deltas and α carry)."""
    params = _start(seed, params)
    check_epoch_args(params, epoch_id, cli_overrides)
    epoch = params.epoch(epoch_id)
    ctx = RunContext.build(params, seed, compute=compute)
    theta, state, digest = _load_prev(ctx, "alphavil", epoch.prev)
    check_weights(state, params, layout.checkpoint_dir("alphavil", seed, epoch.prev))
    return params, epoch, ctx, theta, state, digest


# --- prepare --------------------------------------------------------------------------

def prepare(params: ParamsOrPath = "params.yaml", out_dir: Path = layout.DATA) -> None:
    params = as_params(params)
    check_data_source(params)
    if params.setting == "nlu":
        from alphavil.data.text_prepare import prepare_nlu

        prepare_nlu(params, out_dir)
        return
    if params.setting == "images":
        from alphavil.data.image_prepare import prepare_images

        prepare_images(params, out_dir)
        return
    from alphavil.data.multimnist import save_prepared
    from alphavil.data.digits import load_digits
    from alphavil.data.multimnist import build, task_splits

    d = params.data
    say(f"prepare: loading digits from {d.source!r}")
    digits, labels = load_digits(d.source, d.source_args)
    splits = build(digits, labels, d)
    own = task_splits(digits, labels, d, params.tasks, splits)
    if out_dir.exists() and distributed.is_main():
        shutil.rmtree(out_dir)
    save_prepared(out_dir, splits, params, own)
    say(f"prepare: wrote {', '.join(f'{s} {len(c.left)}' for s, c in splits.items())} "
        f"images to {out_dir}")


# --- train_base -----------------------------------------------------------------------

def train_base(seed: int, params: ParamsOrPath = "params.yaml") -> None:
    """θ_0: the seeded initialisation (a pretrained encoder for NLU), optionally warmed up
    with uniform multitask steps so every method starts from the same point."""
    params = _start(seed, params)
    ctx = RunContext.build(params, seed)
    warm_up(ctx, seed, params.base.warmup_steps, layout.log_dir(f"s{seed}", "base"))
    state = {"epoch": "base", "n": 0, "method": "base", "seed": seed,
             "weights": AlphaVIL(ctx).initial_state()["weights"]}
    save_checkpoint(layout.base_dir(seed), trainable_state(ctx.model), state)


# --- αVIL: finetune / estimate_alpha / merge ------------------------------------------

def finetune(seed: int, epoch_id: str, task: str, cli_overrides: dict,
             params: ParamsOrPath = "params.yaml") -> None:
    params, epoch, ctx, theta, state, digest = _epoch_stage(seed, epoch_id, cli_overrides,
                                                            params)
    if task not in params.tasks:
        raise ParamsError(f"--task {task!r} is not in params.yaml tasks {list(params.tasks)}")
    method = AlphaVIL(ctx)
    steps = method.finetune_steps(epoch, state, task)
    if steps == 0:
        say(f"fine-tune s{seed} {epoch_id} {task}: task weight is 0, so δ = 0 without training")
    with step_logger(layout.log_dir(f"s{seed}", epoch_id, task), steps,
                     f"fine-tune s{seed} {epoch_id} {task}") as on_step:
        delta, stats = method.finetune(epoch, theta, state, task, on_step=on_step)
    save_delta(layout.delta_path(seed, epoch_id, task), delta, task=task, epoch=epoch_id,
               base_digest=digest, examples=stats.examples)


def estimate_alpha(seed: int, epoch_id: str, cli_overrides: dict,
                   params: ParamsOrPath = "params.yaml") -> None:
    params, epoch, ctx, theta, state, digest = _epoch_stage(seed, epoch_id, cli_overrides,
                                                            params)
    deltas = {t: move(load_delta(p, theta, digest, task=t, epoch=epoch_id)[0],
                      ctx.compute.device)
              for t, p in delta_paths(params, seed, epoch_id).items()}
    alphas, trace = AlphaVIL(ctx).estimate(epoch, theta, deltas, state)
    say(f"estimate_alpha s{seed} {epoch_id}: α = "
        + ", ".join(f"{t} {a:.3f}" if a is not None else f"{t} not estimated (weight 0)"
                    for t, a in alphas.items())
        + f"; target dev loss at α = init {trace['dev_loss_at_init']:.4f}"
        + (f"; guard: {trace['guard']['dev_loss_fitted']:.4f} at α vs "
           f"{trace['guard']['dev_loss_theta']:.4f} of θ, merge "
           + ("accepted" if trace["guard"]["accepted"] else "rejected")
           if "guard" in trace else ""))
    write_json(layout.alpha_path(seed, epoch_id),
               {"alpha": alphas, "base": digest, "epoch": epoch_id, **trace})


def merge(seed: int, epoch_id: str, cli_overrides: dict,
          params: ParamsOrPath = "params.yaml") -> None:
    # θ + Σ α_k δ_k in float64, a few element-wise operations: on the CPU, whatever
    # train.device says (no CUDA start-up for it)
    params, epoch, ctx, theta, state, digest = _epoch_stage(seed, epoch_id, cli_overrides,
                                                            params, compute=CPU)
    record = read_alpha_record(layout.alpha_path(seed, epoch_id), epoch_id, digest,
                               list(params.tasks))
    alphas = record["alpha"]  # null: not estimated, the task took no step this epoch
    method = AlphaVIL(ctx)
    paths = delta_paths(params, seed, epoch_id)
    accepted = merge_accepted(record)
    if not accepted:
        g = record["guard"]
        say(f"merge s{seed} {epoch_id}: rejected by alpha.guard (target dev loss "
            f"{g['dev_loss_fitted']:.4f} at the fitted α > {g['dev_loss_theta']:.4f} of θ); "
            "θ and the task weights carry over")
    merged = method.merge(theta, alphas, ((t, load_delta(p, theta, digest, task=t,
                                                         epoch=epoch_id)[0])
                                          for t, p in paths.items()
                                          if alphas[t] is not None), accepted)
    for name, value in merged.items():
        if not torch.isfinite(value).all():
            raise FloatingPointError(f"seed {seed}, epoch {epoch_id}: merged parameter "
                                     f"{name!r} is not finite (α = {alphas}); stopping")
    new_state = method.next_state(epoch, state, alphas, accepted)
    save_checkpoint(layout.checkpoint_dir("alphavil", seed, epoch_id), merged,
                    {"epoch": epoch_id, "n": epoch.n, "method": "alphavil", "seed": seed,
                     **new_state})


# --- baselines: one stage per (method, seed) ------------------------------------------

def train_method(method_name: str, seed: int, params: ParamsOrPath = "params.yaml") -> None:
    params = _start(seed, params)
    if method_name not in METHODS:
        raise ParamsError(f"--method {method_name!r}: expected one of the baselines "
                          f"{sorted(BASELINES)}")
    cls = get_method(method_name)
    if cls.staged:
        raise ParamsError(f"method {method_name!r} runs as per-epoch stages, not train_method")
    ctx = RunContext.build(params, seed)
    theta, _, _ = _load_prev(ctx, method_name, "base")
    method = cls(ctx)
    state = method.initial_state()
    out_root = layout.BASELINES / method_name / f"s{seed}"
    if out_root.exists() and distributed.is_main():
        shutil.rmtree(out_root)
    from alphavil.runtime.steplog import progress

    # train.on_divergence: mark -> a NaN/inf loss ends this method's training instead of the
    # whole run: its later checkpoints repeat the last finite θ, marked `diverged`, so the
    # other methods of an lr-grid experiment still report (alphavil/lrgrid.py never selects
    # an lr at which a method diverged). θ is a copy (trainable_state), so the failed
    # epoch cannot have touched it.
    mark = params.train.on_divergence == "mark"
    diverged: dict | None = None
    for epoch in progress(params.epochs, f"{method_name} s{seed}"):
        if diverged is None:
            try:
                theta, state = method.run_epoch(epoch, theta, state)
            except FloatingPointError as err:
                if not mark:
                    raise
                diverged = {"epoch": epoch.id, "error": str(err)}
                say(f"{method_name} s{seed}: diverged in {epoch.id} ({err}); later "
                    "checkpoints keep the last finite parameters (train.on_divergence: mark)")
        save_checkpoint(layout.checkpoint_dir(method_name, seed, epoch.id), theta,
                        {"epoch": epoch.id, "n": epoch.n, "method": method_name, "seed": seed,
                         **state, **({"diverged": diverged} if diverged else {})})


# --- evaluate -------------------------------------------------------------------------

def dev_records(ctx, dev) -> dict[str, dict]:
    """The target's dev metrics of the loaded model: `dev` (the whole split); under
    alpha.split dev_half also `dev_fit` and `dev_select` (data/prepared.py dev_parts)."""
    from alphavil.data.prepared import dev_parts
    from alphavil.training.loop import evaluate as eval_split, evaluate_parts

    if ctx.params.alpha.split == "dev":
        return {"dev": eval_split(ctx.model, dev, ctx.target)}
    scored = evaluate_parts(ctx.model, dev, ctx.target, dev_parts(len(dev)))
    return {"dev": scored[""], **{f"dev_{part}": scored[part] for part in ("fit", "select")}}


def evaluate(params: ParamsOrPath = "params.yaml") -> None:
    from alphavil.models.prefix_cache import cached_frozen_prefix
    from alphavil.report import majority_share, write_reports
    from alphavil.training.loop import evaluate as eval_split

    params = as_params(params)
    epochs = [("base", 0)] + [(e.id, e.n) for e in params.epochs]
    scored: dict[tuple[str, int, str], dict] = {}
    metric = None
    for seed in params.seeds:
        set_determinism(seed)
        ctx = RunContext.build(params, seed)
        # NLU targets declare their GLUE metric; vision reports accuracy
        metric = ctx.meta["tasks"][ctx.target].get("metric")
        dev = ctx.split("dev", ctx.target)
        test = ctx.split("test", ctx.target)
        # the same splits for every seed (data.seed): the accuracy of always answering
        # the most frequent class, which a method must beat to have learned the target
        majority = {"dev": majority_share(dev.labels), "test": majority_share(test.labels)}
        by_folder: dict[Path, dict] = {}  # θ_0 is one folder that every method starts from
        # every checkpoint is scored on the same batches; an encoder's frozen lower layers
        # then give the same output each time, so they run once per batch (NLU)
        with cached_frozen_prefix(ctx.model):
            for method_name in params.methods:
                for ep_id, n in epochs:
                    folder = layout.checkpoint_dir(method_name, seed, ep_id)
                    if folder not in by_folder:
                        theta, state = load_checkpoint(
                            folder, seed=seed, epoch=ep_id,
                            method="base" if ep_id == "base" else method_name)
                        check_compatible(str(folder), theta, trainable_state(ctx.model),
                                         subset=False)
                        if method_name == "alphavil":
                            check_reported_state(state, params, folder, ep_id)
                        diverged = diverged_epoch(state, folder)
                        load_trainable(ctx.model, theta)
                        by_folder[folder] = {
                            **dev_records(ctx, dev),
                            "test": eval_split(ctx.model, test, ctx.target),
                            "weights": state.get("weights"), "alpha": state.get("alpha"),
                            **({"merge_rejected": True} if state.get("merge_rejected") else {}),
                            **({"diverged": diverged} if diverged else {})}
                    scored[method_name, seed, ep_id] = by_folder[folder]
    records = [{"method": m, "seed": seed, "epoch": ep_id, "n": n, **scored[m, seed, ep_id]}
               for m in params.methods for seed in params.seeds for ep_id, n in epochs]
    write_reports(params, records, metric=metric, majority=majority)
