"""model.heads (alphavil/models.py): one classifier head per task (the paper's model), or
one per label kind, shared by the tasks that read the same classes."""

import pytest
import torch

from alphavil.config import ParamsError, load_params, validate
from alphavil.training.context import RunContext
from alphavil.methods.deltas import finetune_task, task_parameter_names
from alphavil.methods import get_method
from alphavil.models.multitask import build_model, trainable_state
from alphavil.runtime.seeding import generator

from testkit.params import tiny_raw
from test_gcs import Mirror, _run

# `again` reads the target's classes on the same images; `right` another label kind
TASKS = {"left": {"label": "left", "label_noise": 0.0},
         "again": {"label": "left", "label_noise": 0.0},
         "right": {"label": "right", "label_noise": 0.0}}


def _ctx(workdir, heads, tasks=TASKS, **sections):
    workdir(tasks=tasks, model={"heads": heads}, **sections)
    return RunContext.build(load_params("params.yaml"), seed=0)


def _finetune(ctx, task):
    theta = trainable_state(ctx.model)
    delta, _ = finetune_task(ctx.model, theta, ctx.split("train", task), task, weight=1.0,
                             ratio=1.0, batch_size=16, optimizer="adam", lr=1e-2,
                             g=generator(0, "t", task), where="test")
    return delta


def test_label_sharing_gives_a_task_the_head_of_its_label_kind(workdir):
    ctx = _ctx(workdir, "label")
    assert sorted(ctx.model.heads) == ["left", "right"]
    # `again` answers with the target's own classifier ...
    inputs, _ = ctx.split("dev", "left").batch(torch.arange(8))
    assert torch.equal(ctx.model(inputs, "again"), ctx.model(inputs, "left"))
    assert not torch.equal(ctx.model(inputs, "right")[:, :1], ctx.model(inputs, "left")[:, :1])
    # ... so its fine-tune moves that classifier, and its delta says so
    delta = _finetune(ctx, "again")
    assert set(delta) == set(task_parameter_names(ctx.model, "left"))
    assert float(delta["heads.left.weight"].abs().max()) > 0
    assert not any(n.startswith("heads.right.") for n in delta)


def test_per_task_heads_are_the_default_and_keep_every_task_apart(workdir):
    ctx = _ctx(workdir, "task")
    ours = trainable_state(ctx.model)  # θ_0, before the fine-tune below moves the model
    assert sorted(ctx.model.heads) == ["again", "left", "right"]
    delta = _finetune(ctx, "again")
    assert any(n.startswith("heads.again.") for n in delta)
    assert not any(n.startswith("heads.left.") for n in delta)
    # leaving the key out is the paper's model, bit for bit
    raw = ctx.params.dump()
    del raw["model"]["heads"]
    model = validate(raw).model
    labels = {t: s.label for t, s in ctx.params.tasks.items()}
    default = build_model(model, {t: 10 for t in TASKS}, ctx.meta, 0, task_labels=labels)
    assert trainable_state(default).keys() == ours.keys()
    for n, v in trainable_state(default).items():
        assert torch.equal(v, ours[n]), n


def test_sharing_changes_what_a_same_label_task_does_to_the_target(workdir):
    """Uniform training on left + again: with a shared head, again's loss trains the
    target's classifier; with per-task heads it cannot reach it."""
    results = {}
    for heads in ("task", "label"):
        ctx = _ctx(workdir, heads, train={"optimizer": "sgd"})
        base = trainable_state(ctx.model)
        theta, _ = _run(ctx, get_method("uniform")(ctx), base, epochs=1)
        results[heads] = theta
    assert not torch.equal(results["task"]["heads.left.weight"],
                           results["label"]["heads.left.weight"])


def test_gcs_gates_a_shared_head_like_the_trunk(workdir):
    """An auxiliary task sharing the target's head whose gradient is minus the target's, on
    the trunk and on that head: GCS must never apply any of it, so it trains exactly as
    single-task (a rule that treats every head as the task's own overwrites the target's
    head gradient with its negative)."""
    ctx = _ctx(workdir, "label", tasks={k: TASKS[k] for k in ("left", "again")})
    base = trainable_state(ctx.model)
    gcs, state = _run(ctx, Mirror(ctx), base)
    single, _ = _run(ctx, get_method("single_task")(ctx), base)
    for n in gcs:
        assert torch.equal(gcs[n], single[n]), n
    assert state["gcs"]["again"]["applied"] == 0.0
    assert state["gcs"]["again"]["mean_cosine"] == pytest.approx(-1.0, abs=1e-6)


@pytest.mark.parametrize("value", ["labels", "shared", 1, None])
def test_model_heads_must_be_task_or_label(value):
    raw = tiny_raw()
    raw["model"]["heads"] = value
    with pytest.raises(ParamsError, match=r"model\.heads: expected one of"):
        validate(raw)
