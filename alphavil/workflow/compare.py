"""Two studies' outcomes paired on the seeds they share.

    python -m alphavil.workflow.compare results/A results/B [--split dev] [--method alphavil]

For each method in both studies (or each --method), A's final test metric minus B's on
every common seed (summary.json `methods.<m>.per_seed_test`), or with `--split dev` the
final dev metric (per_epoch.json's last epoch): the split a choice between two studies is
made on, so that the test split only reports what was chosen. The mean difference, its 95%
t interval, the paired t-test's p, Holm's correction over the methods compared and the
seeds where A is ahead, all from alphavil.report (paired_comparison, holm). Pairing by seed
pairs a model seed's initialisation and sampling; it says nothing where the studies' data
differ, so the params keys that differ between the two are listed with the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alphavil.config import ParamsError, read_yaml
from alphavil.report import fmt, fmt_p, holm, paired_comparison
from alphavil.store.artifacts import ArtifactError, read_json, write_json


def load(folder: Path) -> tuple[dict, dict]:
    """summary.json and params.yaml of a results/<study> folder."""
    if not folder.is_dir():
        raise ParamsError(f"{folder}: not a folder (expected results/<study>)")
    return read_json(folder / "summary.json"), read_yaml(folder / "params.yaml")


def final_dev(records: list[dict], method: str, metric: str) -> dict[str, float]:
    """Per seed, `method`'s dev metric after its last epoch (a fraction, as per_seed_test)."""
    last: dict[str, dict] = {}
    for r in records:
        if r["method"] == method and r["n"] >= last.get(str(r["seed"]), {"n": -1})["n"]:
            last[str(r["seed"])] = r
    return {s: r["dev"][metric] for s, r in last.items()}


def per_seed(summary: dict, records: list[dict] | None, split: str) -> dict[str, dict]:
    """method -> seed -> final metric on `split` (test: summary.json; dev: the records)."""
    if split == "test":
        return {m: e["per_seed_test"] for m, e in summary["methods"].items()}
    if records is None:
        raise ParamsError("--split dev: expected per_epoch.json records beside summary.json")
    return {m: final_dev(records, m, summary["metric"]) for m in summary["methods"]}


def compare(a: dict, b: dict, methods: list[str] | None = None, split: str = "test",
            records: tuple[list[dict] | None, list[dict] | None] = (None, None)) -> dict:
    """A's per-seed final `split` metric minus B's, per method, on the seeds both have."""
    both = [m for m in a["methods"] if m in b["methods"]]
    for m in methods or []:
        if m not in both:
            raise ParamsError(f"--method {m!r}: expected a method of both studies {both}")
    methods = methods or both
    if not methods:
        raise ParamsError("the two studies have no method in common")
    if a.get("metric") != b.get("metric"):
        raise ParamsError(f"the studies report different metrics ({a.get('metric')!r}, "
                          f"{b.get('metric')!r})")
    va, vb = per_seed(a, records[0], split), per_seed(b, records[1], split)
    seed_sets = [set(v[m]) for m in methods for v in (va, vb)]
    seeds = sorted(set.intersection(*seed_sets), key=int)
    if not seeds:
        raise ParamsError("the two studies share no seed; paired differences need common seeds")
    vs = {m: paired_comparison([va[m][s] for s in seeds], [vb[m][s] for s in seeds])
          for m in methods}
    for m, p in holm({m: c["p_value"] for m, c in vs.items()}).items():
        vs[m]["p_holm"] = p
    return {"metric": a.get("metric"), "split": split, "seeds": [int(s) for s in seeds],
            "methods": vs}


def differing_keys(pa: dict, pb: dict) -> list[str]:
    """Params keys (section.key) whose values differ, seeds aside."""
    out = []
    for k in sorted(set(pa) | set(pb)):
        if k == "seeds" or pa.get(k) == pb.get(k):
            continue
        va, vb = pa.get(k), pb.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += [f"{k}.{s}" for s in sorted(set(va) | set(vb), key=str)
                    if va.get(s) != vb.get(s)]
        else:
            out.append(k)
    return out


def markdown(result: dict, name_a: str, name_b: str, differ: list[str]) -> str:
    k = sum(c["p_value"] is not None for c in result["methods"].values())
    lines = [f"# {name_a} minus {name_b}: final {result.get('split', 'test')} {result['metric']} "
             f"(percentage points), "
             f"paired over seeds {result['seeds']}", "",
             f"| method | mean diff | 95% t CI | p (paired t) | p (Holm, {k}) | A ahead |",
             "|---|---|---|---|---|---|"]
    for m, c in result["methods"].items():
        ci = (f"[{fmt(c['ci95_low'])}, {fmt(c['ci95_high'])}]"
              if c["ci95_low"] is not None else "n/a")
        lines.append(f"| {m} | {fmt(c['mean_diff'])} | {ci} | {fmt_p(c['p_value'])} | "
                     f"{fmt_p(c['p_holm'])} | {c['wins']}/{c['n']} |")
    lines += ["", "params that differ: " + (", ".join(differ) if differ else "none (seeds aside)")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="results/<study A>")
    ap.add_argument("b", type=Path, help="results/<study B>")
    ap.add_argument("--split", choices=("test", "dev"), default="test",
                    help="dev: the split to choose on; test: to report what was chosen")
    ap.add_argument("--method", action="append", help="compare only this method (repeatable)")
    ap.add_argument("--json", type=Path, help="also write the comparison as JSON here")
    args = ap.parse_args(argv)
    try:
        (sa, pa), (sb, pb) = load(args.a), load(args.b)
        records = tuple(read_json(f / "per_epoch.json")["records"] if args.split == "dev"
                        else None for f in (args.a, args.b))
        result = compare(sa, sb, args.method, args.split, records)
        result["differ"] = differing_keys(pa, pb)
    except (ParamsError, ArtifactError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    if args.json:
        write_json(args.json, result)
    print(markdown(result, args.a.name, args.b.name, result["differ"]), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
