"""`python -m benchmarks.scale [CONFIG ...]`: what one seed's first epoch of each method costs
at a configuration's full size, and what the whole configuration would take (docs/scale.md).

Runs the real stage functions in process (no DVC, no per-stage start-up) in a temp folder,
for the overlay(s) over params.yaml restricted to one seed and the first epoch: prepare,
θ_0, αVIL's epoch (every fine-tune, α estimation, merge), one epoch of each baseline, and
`evaluate` (which scores θ_0 and each method's checkpoint), each timed as wall seconds and
as CPU seconds of the process (with one torch thread, what the wall time would be on an
otherwise idle core: on a shared machine the wall time mostly measures the other work).
The extrapolation multiplies these by the configuration's seeds and epochs; it leaves out
DVC's per-stage process
start-up (about 1-3 s a stage on the 2-core machine: docs/performance.md), which it
reports as a stage count.

  python -m benchmarks.scale configs/multifashion.yaml --json scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(configs: list[Path], seed: int) -> dict:
    from alphavil import pipeline
    from alphavil.runtime.seeding import configure_threads
    from alphavil.workflow.studyfile import merged_params

    full = merged_params(configs, ROOT / "params.yaml")
    raw = {**full, "seeds": [seed], "epochs": full["epochs"][:1]}
    ep = raw["epochs"][0]["id"]
    times: dict[str, float] = {}
    cpu: dict[str, float] = {}
    rss: dict[str, float] = {}

    def timed(name, fn, *args):
        t, c = time.perf_counter(), time.process_time()
        fn(*args)
        times[name] = time.perf_counter() - t
        # CPU seconds: with one torch thread, the wall time this would take on a core of
        # its own, whatever else the machine is running
        cpu[name] = time.process_time() - c
        rss[name] = peak_rss_mib()

    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            Path("params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
            threads = configure_threads()
            load_start = os.getloadavg()
            timed("prepare", pipeline.prepare, "params.yaml")
            timed("train_base", pipeline.train_base, seed, "params.yaml")
            for task in raw["tasks"]:
                timed(f"finetune {task}", pipeline.finetune, seed, ep, task, {}, "params.yaml")
            timed("estimate_alpha", pipeline.estimate_alpha, seed, ep, {}, "params.yaml")
            timed("merge", pipeline.merge, seed, ep, {}, "params.yaml")
            for method in raw["baselines"]:
                timed(f"epoch {method}", pipeline.train_method, method, seed, "params.yaml")
            timed("evaluate", pipeline.evaluate, "params.yaml")
            load_end = os.getloadavg()
        finally:
            os.chdir(cwd)

    n_seeds, n_epochs = len(full["seeds"]), len(full["epochs"])
    n_checkpoints = n_seeds * (1 + (1 + len(raw["baselines"])) * n_epochs)
    stages = 2 + n_seeds * (1 + n_epochs * (len(raw["tasks"]) + 2) + len(raw["baselines"]))

    def extrapolate(t: dict[str, float]) -> dict:
        per_method = {"alphavil": sum(v for k, v in t.items() if k.startswith("finetune ")
                                      or k in ("estimate_alpha", "merge")),
                      **{m: t[f"epoch {m}"] for m in raw["baselines"]}}
        per_checkpoint = t["evaluate"] / (1 + len(per_method))  # θ_0 + one per method
        total = (t["prepare"] + n_seeds * (t["train_base"] + n_epochs * sum(per_method.values()))
                 + n_checkpoints * per_checkpoint)
        return {"stage_seconds": {k: round(v, 2) for k, v in t.items()},
                "epoch_seconds": {k: round(v, 2) for k, v in per_method.items()},
                "evaluate_seconds_per_checkpoint": round(per_checkpoint, 2),
                "full_config_hours": round(total / 3600, 2)}

    return {
        "configs": [str(c) for c in configs],
        "sizes": {k: full["data"].get(k) for k in ("n_train", "n_dev", "n_test")},
        "wall": extrapolate(times),
        "cpu": extrapolate(cpu),
        "peak_rss_mib_after": {k: round(v) for k, v in rss.items()},
        "full_config": {"seeds": n_seeds, "epochs": n_epochs, "stages": stages,
                        "checkpoints_scored": n_checkpoints},
        "machine": {"cpus": os.cpu_count(), "torch_threads": threads,
                    "load_average_start": [round(x, 2) for x in load_start],
                    "load_average_end": [round(x, 2) for x in load_end],
                    "date": time.strftime("%Y-%m-%d %H:%M %Z")},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path, nargs="*", default=[ROOT / "configs/multifashion.yaml"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the report here")
    args = ap.parse_args()
    os.environ.setdefault("ALPHAVIL_QUIET", "1")
    report = measure([c.resolve() for c in args.config], args.seed)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
