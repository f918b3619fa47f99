"""Each method at its own learning rate: chosen on dev over a small grid, tested on fresh seeds.

    python -m alphavil.workflow.lrgrid select --grid 0.0003,0.001,0.003 --seeds 0,1,2 [CONFIG ...] [-j N]
    python -m alphavil.workflow.lrgrid test --seeds 5,6,7,8,9,10,11,12,13,14 [CONFIG ...] [-j N]

CONFIG: committed overlays (configs/*.yaml) over HEAD's params.yaml, or one committed study
file (studies/*.yaml: its baselines, data_seed and settings; --seeds replaces its seeds).
`select` queues one DVC experiment per grid value (`dvc exp run --queue -S train.lr=LR
-S seeds=[...]`, over those params, never the workspace's params.yaml),
runs the queue, and picks for every method the lr with the highest mean final-epoch dev
metric over the seeds (metrics/summary.json `methods.<m>.dev`); ties go to the lr nearest
params.yaml's train.lr on a log scale, then to the smaller. It writes metrics/lr_selection.json.
`test` runs one experiment per distinct selected lr on seeds that took no part in the choice
and reports each method at its own lr, αVIL paired with each baseline over the seeds
(metrics/lr_tested.json, metrics/lr_tested.md). docs/pipeline.md, "Learning rate per method".

Reading DVC (`exp_records`) is kept apart from the pure choice and report functions below it.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path

from alphavil.workflow import warm
from alphavil.workflow.expqueue import SUMMARY, dvc_records, queue_all, run_queue
from alphavil.store.artifacts import ArtifactError, read_json, write_json, write_text
from alphavil.config import ParamsError, check_data_source, validate
# SAME: dev metrics closer than this are a tie (means of multiples of 1/N)
from alphavil.report import SAME, holm, mean_std, paired_comparison
from alphavil.workflow.lrtables import lr_text, selection_table, tested_markdown
from alphavil.workflow.studyfile import committed_run_params

SELECTION = Path("metrics/lr_selection.json")
TESTED_JSON = Path("metrics/lr_tested.json")
TESTED_MD = Path("metrics/lr_tested.md")


# --- pure: grid, checks, choice, report ---------------------------------------------------

def parse_list(text: str, kind: type, what: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    # a learning rate must survive lr_text (names, -S overrides, JSON keys) unchanged
    ok = values and len(set(values)) == len(values) and all(
        math.isfinite(v) and v > 0 and float(lr_text(v)) == v if kind is float else v >= 0
        for v in values)
    if not ok:
        expected = ("distinct positive learning rates of at most 12 decimals" if kind is float
                    else "distinct non-negative integer seeds")
        raise ParamsError(f"--{what}: expected comma-separated {expected}, got {text!r}")
    return values


def fixed_params(params: dict) -> dict:
    """Params with train.lr and seeds taken out: what every experiment of a selection and of
    its test must share."""
    out = copy.deepcopy(params)
    out.pop("seeds", None)
    if isinstance(out.get("train"), dict):
        out["train"].pop("lr", None)
    return out


def first_difference(a, b, path: str = "") -> str | None:
    """The first key path where two params trees differ (None if equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{path}{k}"
            d = first_difference(a[k], b[k], f"{path}{k}.")
            if d:
                return d
        return None
    return None if a == b else path.rstrip(".") or "(top level)"


def check_runs(records: list[dict], seeds: list[int], lrs: list[float],
               fixed: dict | None = None) -> dict:
    """Refuse experiments that differ in anything but train.lr: all must have these seeds,
    the learning rates `lrs` (one each) and the same other params (those of `fixed` when
    given), and report the same methods. Returns {lr: record}."""
    by_lr: dict[float, dict] = {}
    ref = fixed if fixed is not None else fixed_params(records[0]["params"] or {})
    for r in records:
        p = r["params"] or {}
        if p.get("seeds") != seeds:
            raise ParamsError(f"experiment {r['name']!r}: seeds {p.get('seeds')} where {seeds} "
                              "were asked for; experiments compared must differ only in train.lr")
        diff = first_difference(ref, fixed_params(p))
        if diff:
            raise ParamsError(f"experiment {r['name']!r}: params key {diff} differs from the "
                              "other experiments'; they must differ only in train.lr")
        lr = (p.get("train") or {}).get("lr")
        if lr in by_lr:
            raise ParamsError(f"experiments {by_lr[lr]['name']!r} and {r['name']!r} both have "
                              f"train.lr {lr}")
        m = r["metrics"] or {}
        if not isinstance(m.get("methods"), dict) or m.get("seeds") != len(seeds):
            raise ParamsError(f"experiment {r['name']!r}: {SUMMARY} lacks methods over "
                              f"{len(seeds)} seeds")
        by_lr[lr] = r
    if sorted(by_lr) != sorted(lrs):
        raise ParamsError(f"experiments have train.lr {sorted(by_lr)}, expected {sorted(lrs)}")
    methods = {tuple(r["metrics"]["methods"]) for r in by_lr.values()}
    if len(methods) != 1:
        raise ParamsError(f"experiments report different methods: {sorted(methods)}")
    return by_lr


def choose(dev_by_lr: dict[float, float], default_lr: float) -> float:
    """The lr with the highest dev metric; a tie goes to the lr nearest `default_lr` on a log
    scale (the grid is multiplicative), then to the smaller lr."""
    best = max(dev_by_lr.values())
    tied = [lr for lr, dev in dev_by_lr.items() if best - dev <= SAME]
    # rounded: 1e-4 and 1e-2 are equally near 1e-3, though their logs differ in the last bit
    return min(tied, key=lambda lr: (round(abs(math.log(lr / default_lr)), 9), lr))


def select(records: list[dict], grid: list[float], seeds: list[int],
           default_lr: float) -> dict:
    """Per method, the lr whose experiment has the best mean final-epoch dev metric
    (summary.json `methods.<m>.dev`, a mean over `seeds`)."""
    by_lr = check_runs(records, seeds, grid)
    first = next(iter(by_lr.values()))
    chosen = {}
    for method in first["metrics"]["methods"]:
        entries = {lr: r["metrics"]["methods"][method] for lr, r in sorted(by_lr.items())}
        # alpha.split dev_half: the dev part α was not fitted on (data/prepared.py dev_parts)
        dev = {lr: e.get("dev_select", e["dev"]) for lr, e in entries.items()}
        # an lr at which the method diverged on any seed (train.on_divergence: mark) is not
        # a candidate for it; the other methods keep that lr
        diverged = sorted(lr for lr, e in entries.items() if e.get("diverged"))
        candidates = {lr: d for lr, d in dev.items() if lr not in diverged}
        if not candidates:
            raise ParamsError(f"{method}: diverged at every train.lr of the grid "
                              f"{[lr_text(lr) for lr in dev]}; try smaller values")
        lr = choose(candidates, default_lr)
        # at the grid's smallest or largest lr the best may lie beyond it: flag it (below
        # the top, where the next lr up diverged, it is not flagged)
        chosen[method] = {"lr": lr, "dev": dev[lr],
                          "at_edge": len(dev) > 1 and lr in (min(dev), max(dev)),
                          "dev_by_lr": {lr_text(k): v for k, v in dev.items()},
                          **({"diverged_at": [lr_text(g) for g in diverged]} if diverged else {})}
    return {"methods": chosen, "grid": sorted(by_lr), "seeds": seeds,
            "default_lr": default_lr, "metric": first["metrics"].get("metric"),
            "experiments": [r["name"] for r in records],
            "fixed_params": fixed_params(first["params"])}


def tested(selection: dict, records: list[dict], seeds: list[int]) -> dict:
    """Each method's final test metric per seed at its selected lr, and αVIL minus each
    baseline paired over the seeds (report.paired_comparison, Holm over the baselines)."""
    lrs = sorted({e["lr"] for e in selection["methods"].values()})
    by_lr = check_runs(records, seeds, lrs, selection["fixed_params"])
    methods: dict[str, dict] = {}
    for method, choice in selection["methods"].items():
        run = by_lr[choice["lr"]]
        per_seed = run["metrics"]["methods"][method]["per_seed_test"]
        if sorted(per_seed) != sorted(map(str, seeds)):
            raise ParamsError(f"experiment {run['name']!r}: {method} per_seed_test has seeds "
                              f"{sorted(per_seed)}, expected {seeds}")
        values = [per_seed[str(s)] for s in seeds]
        mean, std = mean_std(values)
        diverged = run["metrics"]["methods"][method].get("diverged")
        methods[method] = {"lr": choice["lr"], "test": mean, "test_std": std,
                           "per_seed_test": dict(zip(map(str, seeds), values)),
                           "experiment": run["name"],
                           **({"diverged": diverged} if diverged else {})}
    out = {"methods": methods, "seeds": seeds, "metric": selection.get("metric"),
           "selection_seeds": selection["seeds"], "grid": selection["grid"],
           "experiments": [r["name"] for r in records]}
    if "alphavil" in methods:
        a = [methods["alphavil"]["per_seed_test"][str(s)] for s in seeds]
        vs = {m: paired_comparison(a, [e["per_seed_test"][str(s)] for s in seeds])
              for m, e in methods.items() if m != "alphavil"}
        for m, p in holm({m: c["p_value"] for m, c in vs.items()}).items():
            vs[m]["p_holm"] = p
        out["alphavil_vs"] = vs
    return out


# --- commands -------------------------------------------------------------------------------

def base_params(configs: list[Path], root: Path = Path(".")) -> dict:
    """The params every experiment runs, train.lr and seeds aside, validated and default-filled:
    a committed study file's or committed overlays over HEAD's params.yaml
    (studyfile.committed_run_params), never the workspace's params.yaml."""
    raw = committed_run_params(configs, root).dump()
    # a baseline that diverges at some lr is marked, not fatal: one method's NaN at the
    # grid's top would otherwise deny that lr to every method (alphavil/pipeline.py)
    raw["train"] = {**raw["train"], "on_divergence": "mark"}
    params = validate(raw, " + ".join(map(str, configs)) or "HEAD:params.yaml")
    check_data_source(params)
    for i, epoch in enumerate(params.epochs):
        if "lr" in epoch.given:  # the grid would not act on that epoch
            raise ParamsError(f"epochs[{i}].overrides.lr: expected none (it replaces the "
                              "train.lr the grid varies for that epoch)")
    return params.dump()


def queue_grid(base: dict, lrs: list[float], seeds: list[int], prefix: str, jobs: int,
               params_path: Path = Path("params.yaml")) -> list[dict]:
    """Run one experiment per lr over `base` with `seeds`; its successful records."""
    for lr in lrs:  # every params.yaml the queue will run, before DVC runs any
        validate({**base, "seeds": seeds, "train": {**base["train"], "lr": lr}},
                 f"train.lr={lr_text(lr)} seeds={seeds}")  # base: default-filled already
    names = {f"{prefix}-{lr_text(lr)}": [f"train.lr={lr_text(lr)}",
                                         f"seeds=[{','.join(map(str, seeds))}]"] for lr in lrs}
    taken = sorted({r["name"] for r in dvc_records() if not r["failed"]} & set(names))
    if taken:
        raise ParamsError(f"experiments {taken} exist already; `dvc exp remove "
                          f"{' '.join(taken)}` first")
    queue_all({**base, "seeds": seeds}, names, params_path)
    with warm.worker_env() as worker, warm.environ(worker.env):  # no per-stage start-up
        return run_queue(list(names), jobs)


def cmd_select(args) -> None:
    grid, seeds = args.grid, args.seeds
    base = base_params(args.config)
    records = queue_grid(base, grid, seeds, "lrsel", args.jobs)
    sel = select(records, grid, seeds, float(base["train"]["lr"]))
    sel["configs"] = [str(c) for c in args.config]
    write_json(SELECTION, sel)
    print(selection_table(sel), end="")


def cmd_test(args) -> None:
    seeds = args.seeds
    sel = read_json(SELECTION)
    reused = sorted(set(seeds) & set(sel.get("seeds", [])))
    if reused:
        raise ParamsError(f"--seeds: {reused} took part in the selection ({SELECTION} seeds "
                          f"{sel['seeds']}); test on fresh seeds")
    base = base_params(args.config)
    diff = first_difference(sel["fixed_params"], fixed_params(base))
    if diff:
        raise ParamsError(f"params key {diff} differs from the selection's ({SELECTION}); "
                          "pass the same overlays as to select")
    lrs = sorted({e["lr"] for e in sel["methods"].values()})
    records = queue_grid(base, lrs, seeds, "lrtest", args.jobs)
    result = tested(sel, records, seeds)
    write_json(TESTED_JSON, result)
    write_text(TESTED_MD, tested_markdown(result))
    print(tested_markdown(result), end="")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, like every other bad input
        self.exit(2, f"error: {message}\n")


def _listed(kind: type, what: str):
    """An argparse type: parse_list's check, so a bad list fails while parsing."""
    def parse(text: str) -> list:
        try:
            return parse_list(text, kind, what)
        except ParamsError as err:
            raise argparse.ArgumentTypeError(str(err).split(": ", 1)[1]) from None
    return parse


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name, helptext in (("select", "choose each method's lr on dev"),
                           ("test", "test each method at its lr on fresh seeds")):
        p = sub.add_parser(name, help=helptext)
        if name == "select":
            p.add_argument("--grid", required=True, type=_listed(float, "grid"),
                           help="e.g. 0.0003,0.001,0.003")
        p.add_argument("--seeds", required=True, type=_listed(int, "seeds"), help="e.g. 0,1,2")
        p.add_argument("config", type=Path, nargs="*",
                       help="committed overlay file(s) in configs/, or one study file")
        p.add_argument("-j", "--jobs", type=int, default=1, help="queue workers")
    try:
        args = ap.parse_args(argv)
    except SystemExit as done:  # --help, or a bad argument already reported in one line
        return done.code
    try:
        if args.jobs < 1:
            raise ParamsError(f"-j: expected a number of workers >= 1, got {args.jobs}")
        (cmd_select if args.command == "select" else cmd_test)(args)
    except (ParamsError, ArtifactError) as err:
        for line in str(err).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
