"""GCS (alphavil/methods/gcs.py): an auxiliary gradient reaches the shared trunk only where
its cosine with the target's gradient is positive."""

import numpy as np
import pytest
import torch

from alphavil.config import ParamsError, load_params, validate
from alphavil.training.context import RunContext
from alphavil.methods import get_method
from alphavil.methods.gcs import GCS, cosine, gate
from alphavil.models.multitask import trainable_state
from alphavil.training.loop import task_loss

from testkit.params import changed, tiny_raw


def _ctx(workdir, **sections):
    workdir(**sections)
    return RunContext.build(load_params("params.yaml"), seed=0)


def _run(ctx, method, theta, epochs=2):
    state = method.initial_state()
    for epoch in ctx.params.epochs[:epochs]:
        theta, state = method.run_epoch(epoch, theta, state)
    return theta, state


class Mirror(GCS):
    """GCS whose auxiliary 'task' is the target's own loss on the target's batch of the
    step, times `sign`: its gradient on the trunk is exactly ± the target's (and it
    reaches no head of its own)."""

    sign = -1.0

    def loss(self, batch):
        task, inputs, labels, weight = batch
        if task == self.ctx.target:
            self._target_batch = batch
            return super().loss(batch)
        task, inputs, labels, weight = self._target_batch
        loss = self.sign * (task_loss(self.ctx.model(inputs, task), labels) * weight).mean()
        return loss, loss.detach()


def test_cosine_and_gate_match_a_hand_computation():
    rng = np.random.default_rng(0)
    a = {"x": rng.normal(size=(3, 2)), "y": rng.normal(size=4)}
    b = {"x": rng.normal(size=(3, 2)), "y": rng.normal(size=4), "head": rng.normal(size=2)}
    va, vb = (np.concatenate([d[n].ravel() for n in ("x", "y")]) for d in (a, b))
    expected = va @ vb / np.linalg.norm(va) / np.linalg.norm(vb)
    t = {k: {n: torch.tensor(v, dtype=torch.float32) for n, v in d.items()} for k, d in
         (("a", a), ("b", b))}
    # over the shared parameters only: b's head does not count
    assert float(cosine(t["a"], t["b"], ["x", "y"])) == pytest.approx(expected, rel=1e-6)
    # a parameter one gradient lacks counts as 0 there (its norm still counts in the other)
    only_x = va[:6] @ vb[:6] / np.linalg.norm(va[:6]) / np.linalg.norm(vb)
    assert float(cosine({"x": t["a"]["x"]}, t["b"], ["x", "y"])) == pytest.approx(only_x, rel=1e-6)
    assert float(cosine({"x": torch.zeros(3, 2)}, t["b"], ["x"])) == 0.0
    # the paper's rule: strictly positive cosine; unweighted 1, weighted the cosine itself
    assert [gate(c, False) for c in (-0.5, 0.0, 1e-9, 0.7)] == [0.0, 0.0, 1.0, 1.0]
    assert [gate(c, True) for c in (-0.5, 0.0, 0.7)] == [0.0, 0.0, 0.7]


def test_an_auxiliary_gradient_opposite_to_the_target_is_never_applied(workdir):
    """Cosine −1 at every step: GCS must train exactly as single-task training does, on
    the same batches (a rule that adds every gradient, or compares |cos|, fails)."""
    ctx = _ctx(workdir)
    base = trainable_state(ctx.model)
    gcs, state = _run(ctx, Mirror(ctx), base)
    single, _ = _run(ctx, get_method("single_task")(ctx), base)
    assert gcs.keys() == single.keys()
    for n in gcs:
        assert torch.equal(gcs[n], single[n]), n
    assert state["gcs"]["right"]["applied"] == 0.0
    assert state["gcs"]["right"]["mean_cosine"] == pytest.approx(-1.0, abs=1e-6)


def test_an_identical_auxiliary_gradient_is_applied(workdir):
    """Cosine +1 at every step: the copy is added at every step, so the trunk moves
    differently from single-task training (a rule that never adds fails), while a head
    no loss reaches stays as it was."""
    ctx = _ctx(workdir, train={"optimizer": "sgd"})
    base = trainable_state(ctx.model)
    mirror = Mirror(ctx)
    mirror.sign = 1.0
    gcs, state = _run(ctx, mirror, base)
    single, _ = _run(ctx, get_method("single_task")(ctx), base)
    assert state["gcs"]["right"] == {"applied": 1.0, "mean_cosine": pytest.approx(1.0, abs=1e-6)}
    trunk = [n for n in gcs if n.startswith("trunk.")]
    assert all(not torch.equal(gcs[n], single[n]) for n in trunk)
    assert torch.equal(gcs["heads.right.weight"], base["heads.right.weight"])


def test_real_auxiliary_task_heads_train_and_weighted_changes_the_result(workdir):
    """With the real `right` task: its head trains whatever the cosine, the gate opens,
    and `gcs.weighted` (scaling by a cosine below 1) changes the trained trunk."""
    ctx = _ctx(workdir)
    base = trainable_state(ctx.model)
    plain, state = _run(ctx, get_method("gcs")(ctx), base)
    stats = state["gcs"]["right"]
    assert -1.0 < stats["mean_cosine"] < 1.0 and 0.0 < stats["applied"] <= 1.0
    assert not torch.equal(plain["heads.right.weight"], base["heads.right.weight"])
    ctx.params = changed(ctx.params, gcs={"weighted": True})
    weighted, state_w = _run(ctx, get_method("gcs")(ctx), base)
    assert state_w["gcs"]["right"]["applied"] > 0.0
    assert any(not torch.equal(plain[n], weighted[n]) for n in plain if n.startswith("trunk."))


def test_without_auxiliary_tasks_gcs_is_single_task(workdir):
    ctx = _ctx(workdir, tasks={"left": {"label": "left", "label_noise": 0.0}})
    base = trainable_state(ctx.model)
    gcs, state = _run(ctx, get_method("gcs")(ctx), base)
    single, _ = _run(ctx, get_method("single_task")(ctx), base)
    for n in gcs:
        assert torch.equal(gcs[n], single[n]), n
    assert state["gcs"] == {}


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_gcs_weighted_must_be_a_boolean(value):
    with pytest.raises(ParamsError, match="gcs.weighted: expected true or false"):
        validate(tiny_raw(gcs={"weighted": value}))
