"""benchmarks/suite_deltas.py: the per-task delta diagnosis reported in docs/results.md,
checked against a direct computation on a loaded model (not the functional path it uses)."""

import pytest
import torch

from alphavil.store import layout
from alphavil.store.artifacts import checkpoint_digest, load_checkpoint, load_delta
from alphavil.config import load_params
from alphavil.training.context import RunContext
from alphavil.models.multitask import load_trainable
from alphavil.training.loop import evaluate, task_loss
from benchmarks.suite_deltas import measure

from testkit.artifacts import fit_first_epoch_alpha


def test_delta_diagnosis_matches_a_direct_computation(workdir):
    workdir()
    fit_first_epoch_alpha(0)
    params = load_params("params.yaml")
    rows = {r["task"]: r for r in measure(params, 0, "ep0")}
    ctx = RunContext.build(params, 0)
    folder = layout.checkpoint_dir("alphavil", 0, "base")
    theta, _ = load_checkpoint(folder)
    digest = checkpoint_digest(folder)
    delta = {t: load_delta(layout.delta_path(0, "ep0", t), theta, digest)[0]
             for t in ("left", "right")}
    dev = ctx.split("dev", "left")

    def loss_at(*tasks):
        load_trainable(ctx.model, {n: v + sum(delta[t][n] for t in tasks if n in delta[t])
                                   for n, v in theta.items()})
        return evaluate(ctx.model, dev, "left")["loss"]

    # ΔL: right's change added on top of the target's own step (not on θ alone)
    assert rows["right"]["dL"] == pytest.approx(loss_at("left", "right") - loss_at("left"),
                                                abs=1e-5)
    assert "dL" not in rows["left"]
    # cos against the descent direction −∇L_dev(θ) over the trunk, by backward()
    load_trainable(ctx.model, theta)
    ctx.model.zero_grad()
    inputs, labels = dev.batch(torch.arange(len(dev)))
    task_loss(ctx.model(inputs, "left"), labels).mean().backward()
    names = sorted(n for n in theta if n.startswith("trunk."))
    g = -torch.cat([dict(ctx.model.named_parameters())[n].grad.double().flatten()
                    for n in names])
    for t in ("left", "right"):
        d = torch.cat([delta[t][n].double().flatten() for n in names])
        assert rows[t]["trunk"] == pytest.approx(float(d.norm()), rel=1e-9)
        assert rows[t]["cos"] == pytest.approx(float(d @ g / d.norm() / g.norm()), abs=1e-5)
    # the α fitted that epoch, as estimate_alpha wrote it
    assert rows["right"]["alpha"] is not None and rows["left"]["role"] == "target"
