"""joint.schedule (alphavil/methods/joint.py): how the joint baselines turn their tasks' batch
streams into optimizer steps, what each spends, and that it reaches no αVIL artifact."""

import filecmp
import hashlib

import pytest
import torch

from alphavil.methods.joint import SCHEDULES, each_step, round_robin, spread
from alphavil.training.loop import train_pass

from testkit.inprocess import counted_epoch, run_stages
from testkit.params import tiny_raw

# a small target (2 batches) beside a large auxiliary task (12 batches)
TARGET = [("t", i) for i in range(2)]
AUX = [("a", i) for i in range(12)]


def _steps(schedule):
    out = SCHEDULES[schedule]([TARGET, AUX])
    return [s if isinstance(s, list) else [s] for s in out]


def _target_steps(steps):
    return [k for k, step in enumerate(steps) if any(b[0] == "t" for b in step)]


def test_round_robin_front_loads_the_small_target():
    steps = _steps("round_robin")
    assert [b for s in steps for b in s] == round_robin([TARGET, AUX])
    assert len(steps) == 14 and _target_steps(steps) == [0, 2]


def test_spread_places_each_batch_once_by_its_position_in_its_stream():
    steps = _steps("spread")
    assert len(steps) == 14 and all(len(s) == 1 for s in steps)
    assert sorted(b for s in steps for b in s) == sorted(TARGET + AUX)  # each batch once
    hits = _target_steps(steps)
    assert hits[0] >= 2 and hits[-1] >= 14 * 2 // 3  # first quarter, then the last third
    # each stream keeps its own order
    assert [b for s in steps for b in s if b[0] == "a"] == AUX
    # equal lengths: exactly round_robin's order
    assert spread([TARGET, AUX[:2]]) == round_robin([TARGET, AUX[:2]])


def test_each_step_takes_a_batch_of_every_task_cycling_the_shorter():
    steps = _steps("each_step")
    assert len(steps) == 12  # the longest stream's length
    assert steps == [[TARGET[k % 2], AUX[k]] for k in range(12)]
    assert _target_steps(steps) == list(range(12))  # the last third too
    assert each_step([[], AUX[:3]]) == [[b] for b in AUX[:3]]  # an empty stream drops out


def test_a_group_is_one_step_on_the_sum_of_its_losses():
    """train_pass on [b1, b2] as one item: one SGD step whose update is that of the summed
    loss (not two steps), one logged loss (their sum) and both batches' examples."""
    torch.manual_seed(0)

    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = torch.nn.Linear(3, 4)
            self.heads = torch.nn.ModuleDict({t: torch.nn.Linear(4, 2) for t in "ab"})

        def forward(self, inputs, task):
            return self.heads[task](torch.tanh(self.trunk(inputs["x"])))

    model, ref = Two(), Two()
    ref.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(1)
    batches = [(t, {"x": torch.randn(n, 3, generator=g)}, torch.randint(0, 2, (n,), generator=g),
                1.0) for t, n in (("a", 5), ("b", 3))]
    from alphavil.training.optim import SGD

    logged = []
    stats = train_pass(model, [batches], SGD(model.parameters(), 0.1, momentum=0.0),
                       on_step=lambda s, v: logged.append((s, v)))
    assert stats.steps == 1 and stats.examples == 8 and len(logged) == 1
    losses = [torch.nn.functional.cross_entropy(ref(x, t), y) for t, x, y, _ in batches]
    (losses[0] + losses[1]).backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.1 * p.grad
    for pa, pb in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7)
    assert logged[0][1] == pytest.approx(float((losses[0] + losses[1]).detach()), rel=1e-6)


SMALL_TARGET = {"left": {"label": "left", "label_noise": 0.0, "n_train": 24},
                "right": {"label": "right", "label_noise": 0.0}}


def _epoch(workdir, method, schedule, **sections):
    """One epoch of `method` with a target of 24 examples (one batch) and an auxiliary task
    of 96 (three): the rows backpropagated per task, the state's count, θ."""
    workdir(tasks=SMALL_TARGET, joint={"schedule": schedule}, **sections)
    seen, state, theta = counted_epoch(method)
    return seen, state["passes"], theta


@pytest.mark.parametrize("method,schedule,passes", [
    # each_step: three steps, each the target's one batch (24) and a batch of right (32)
    ("uniform", "each_step", 3 * 24 + 96), ("uniform", "spread", 120),
    ("uniform", "round_robin", 120), ("diw", "each_step", 168), ("single_task", "each_step", 24),
    # forkmerge: the target-only branch (24) and the joint branch as uniform
    ("forkmerge", "each_step", 24 + 168), ("forkmerge", "round_robin", 24 + 120)])
def test_the_passes_counted_are_the_passes_trained(workdir, method, schedule, passes):
    seen, recorded, _ = _epoch(workdir, method, schedule)
    assert sum(n for _, n in seen) == recorded == passes


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_compute_match_spends_the_budget_under_every_schedule(workdir, schedule):
    # αVIL plans 24 + 96 + (32 + 16 + 32) = 200 passes per epoch
    seen, recorded, _ = _epoch(workdir, "uniform", schedule, budget={"match": "compute"})
    assert sum(n for _, n in seen) == recorded
    assert abs(recorded - 200) <= 2 * 32 // 2  # within half an each_step step


def test_each_step_keeps_diws_weights_on_repeated_batches(workdir):
    """DIW differs from uniform under each_step (its weights reach the auxiliary batches)."""
    _, _, diw = _epoch(workdir, "diw", "each_step")
    _, _, uniform = _epoch(workdir, "uniform", "each_step")
    assert any(not torch.equal(diw[n], uniform[n]) for n in diw)


def _hashes(folder, sub):
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted((folder / sub).rglob("*")) if f.is_file()}


def test_the_schedule_changes_the_joint_baselines_and_nothing_of_alphavil(tmp_path):
    runs = {}
    for schedule in ("each_step", "round_robin"):
        raw = tiny_raw(tasks=SMALL_TARGET, baselines=["single_task", "uniform", "gcs"],
                       joint={"schedule": schedule})
        run_stages(raw, tmp_path / schedule)
        runs[schedule] = {sub: _hashes(tmp_path / schedule, sub)
                          for sub in ("checkpoints", "deltas", "alphas", "baselines")}
    a, b = runs["each_step"], runs["round_robin"]
    for sub in ("checkpoints", "deltas", "alphas"):  # αVIL's θ_0, deltas, α and merges
        assert a[sub] and a[sub] == b[sub], sub
    models = [k for k in a["baselines"] if k.endswith("model.safetensors")]
    changed = {k.split("/")[1] for k in models if a["baselines"][k] != b["baselines"][k]}
    # single_task has one stream; GCS keeps its own schedule
    assert changed == {"uniform"}
    assert filecmp.cmp(tmp_path / "each_step" / "baselines/gcs/s0/ep1/state.json",
                       tmp_path / "round_robin" / "baselines/gcs/s0/ep1/state.json",
                       shallow=False)
