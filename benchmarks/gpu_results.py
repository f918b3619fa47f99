"""What benchmarks/gpu_check.py reads from a pipeline run, and how it compares the
device's run with the CPU's."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

# CPU and GPU agree when every α differs by at most ALPHA and every final accuracy by at
# most max(ACC, ACC_EXAMPLES test examples). fp32 on the GPU is IEEE fp32 (TF32 off,
# alphavil/device.py), so only the order of floating-point sums differs.
TOLERANCE = {"alpha": 0.01, "acc": 0.01, "acc_examples": 2}


def collect(folder: Path) -> dict:
    """α of every (seed, epoch) and the final epoch's scores of every (method, seed)."""
    alphas = {f"{p.parent.name}/{p.stem}": json.loads(p.read_text())["alpha"]
              for p in sorted((folder / "alphas").glob("s*/ep*.json"))}
    records = json.loads((folder / "metrics/per_epoch.json").read_text())["records"]
    last = max(r["n"] for r in records)
    final = {f"{r['method']}/s{r['seed']}": {"test_acc": r["test"]["acc"],
                                             "dev_acc": r["dev"]["acc"],
                                             "test_loss": r["test"]["loss"]}
             for r in records if r["n"] == last}
    return {"alphas": alphas, "final": final}


def compare(ref: dict, other: dict, n_test: int) -> dict:
    """How far `other` (the device's run) is from `ref` (the CPU's)."""
    alpha_diff, mismatched = 0.0, []
    for key, a in ref["alphas"].items():
        b = other["alphas"].get(key, {})
        for task, va in a.items():
            vb = b.get(task)
            if (va is None) != (vb is None):
                mismatched.append(f"{key}/{task}: {va} vs {vb}")
            elif va is not None:
                alpha_diff = max(alpha_diff, abs(va - vb))
    missing = sorted(set(ref["alphas"]) ^ set(other["alphas"])) + \
        sorted(set(ref["final"]) ^ set(other["final"]))
    acc_diff = max((abs(v["test_acc"] - other["final"][k]["test_acc"])
                    for k, v in ref["final"].items() if k in other["final"]), default=0.0)
    acc_tol = max(TOLERANCE["acc"], TOLERANCE["acc_examples"] / n_test)
    ok = (not mismatched and not missing and alpha_diff <= TOLERANCE["alpha"]
          and acc_diff <= acc_tol)
    return {"alpha_max_abs_diff": alpha_diff, "test_acc_max_abs_diff": acc_diff,
            "acc_tolerance": acc_tol, "alpha_tolerance": TOLERANCE["alpha"],
            "null_mismatch": mismatched, "missing": missing, "agree": ok}


def stage_times(timing_file: Path, repro_wall: float) -> dict:
    """Per stage kind: process wall, start-up (interpreter + imports, then params, CUDA
    initialisation and the model until the stage's first own work) and its work."""
    rows: dict[str, dict[str, list]] = {}
    heavy = set()
    total = 0.0
    for line in timing_file.read_text().splitlines() if timing_file.is_file() else []:
        r = json.loads(line)
        kind = Path(r["argv"][0]).stem
        # check_params validates and exits without importing the pipeline, so it has no
        # "enter" mark: its whole process counts as start-up
        start, end = r.get("start"), r["end"]
        enter = r.get("enter", end)
        if start is None or not 0 <= enter - start < 300:
            start = None  # no usable process start time (no /proc): count from the imports
        ready = r.get("ready") or enter
        interp = enter - start if start is not None else 0.0
        logger = r.get("logger_import", 0.0)  # dvclive, imported by the step logger
        row = rows.setdefault(kind, {k: [] for k in ("wall", "imports", "setup", "cuda_init",
                                                     "work")})
        row["wall"].append(end - (start if start is not None else enter))
        row["imports"].append(interp + logger)
        row["setup"].append(ready - enter)
        row["cuda_init"].append(r.get("cuda_init", 0.0))
        row["work"].append(end - ready - logger)
        total += row["wall"][-1]
        heavy.update(r.get("heavy_modules", []))
    table = {}
    for kind, row in rows.items():
        mean = {k: statistics.mean(v) for k, v in row.items()}
        startup = mean["imports"] + mean["setup"]
        table[kind] = {"n": len(row["wall"]), **mean, "startup": startup,
                       "startup_share": startup / mean["wall"] if mean["wall"] else None}
    return {"stages": table, "processes_wall": total, "repro_wall": repro_wall,
            "dvc_overhead": repro_wall - total if total else None,
            "heavy_modules_seen": sorted(heavy)}
