"""Write the measured figures of README.md and docs/*.md from stored results.

    python -m alphavil.workflow.docs            (make docs)   rewrite every results block
    python -m alphavil.workflow.docs --check                  exit 1 naming each stale block

A results block is the text between two markers; everything between them is generated:

    <!-- results: STUDY VIEW -->            e.g. <!-- results: default methods -->
    <!-- results: STUDY compare OTHER -->   STUDY minus OTHER, paired on common seeds
    <!-- results: STUDY compare OTHER dev --> the same on the final dev metric (choices)
    <!-- /results -->

from results/STUDY/ (written by `python -m alphavil.workflow.study run studies/STUDY.yaml`)
or, for the view `bench`, results/bench/ (`make bench`). Views: methods, weights, ranking,
verdict, machine, compare OTHER, bench. Where the results are not there yet the block says
which command produces them. The docs hold no measured number outside these blocks
(tests/test_docs.py), so every figure they show comes from a committed command over
stored results, and `--check` finds the blocks whose results have changed since.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from alphavil.config import ParamsError
from alphavil.report import alpha_cell, fmt, fmt_p
from alphavil.store.artifacts import ArtifactError, read_json
from alphavil.workflow import compare as pair

RESULTS = Path("results")
STUDIES = Path("studies")
IMAGES = Path("docs/img")
BLOCK = re.compile(r"(<!-- results: ([^>]*?) -->\n)(.*?)(<!-- /results -->)", re.S)
VIEWS = ("methods", "weights", "ranking", "verdict", "machine", "compare", "bench", "runtime")


def doc_files(root: Path = Path(".")) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def study_command(study: str) -> str:
    if study == "bench":
        return "make bench"
    return f"python -m alphavil.workflow.study run studies/{study}.yaml -j 2"


def not_measured(study: str) -> str:
    return f"Not measured with the current code yet: `{study_command(study)}`.\n"


def _seeds_text(seeds: list) -> str:
    seeds = sorted(int(s) for s in seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _caption(study: str, summary: dict, params: dict) -> str:
    seeds = params.get("seeds") or []
    return (f"results/{study}/: target `{summary['target']}`, test {summary['metric']} (%) after "
            f"{summary['epochs']} epochs, seeds {_seeds_text(seeds)} ({len(seeds)}), data_seed "
            f"{(params.get('data') or {}).get('seed')}.")


# --- views over one study ---------------------------------------------------------------------

def view_methods(study: str, summary: dict, params: dict) -> str:
    vs = summary.get("alphavil_vs") or {}
    k = sum(c["p_value"] is not None for c in vs.values())
    floor = summary.get("majority")
    lines = [_caption(study, summary, params) + (
        f" Majority class (always its most frequent class): test {fmt(floor['test'])}, dev "
        f"{fmt(floor['dev'])}." if floor else ""), "",
             "| method | final test (mean ± sd) | best-on-dev test | αVIL minus it (pp) "
             f"| 95% t CI | p (Holm, {k}) | αVIL ahead |", "|---|---|---|---|---|---|---|"]
    for m, e in summary["methods"].items():
        c = vs.get(m)
        if c is None:
            paired = "| – | – | – | – |"
        else:
            ci = (f"[{fmt(c['ci95_low'])}, {fmt(c['ci95_high'])}]"
                  if c["ci95_low"] is not None else "n/a")
            paired = f"| {fmt(c['mean_diff'])} | {ci} | {fmt_p(c['p_holm'])} | {c['wins']}/{c['n']} |"
        lines.append(f"| {m} | {fmt(e['test'])} ± {fmt(e['test_std'])} "
                     f"| {fmt(e['best_dev']['test'])} {paired}")
    diverged = [m for m, e in summary["methods"].items() if e.get("diverged")]
    if diverged:
        lines += ["", f"Diverged on some seed (last finite parameters kept): {', '.join(diverged)}."]
    return "\n".join(lines) + "\n"


def _alphavil(summary: dict) -> dict | None:
    return summary["methods"].get("alphavil")


def render_weights_png(study: str, folder: Path, out: Path) -> bool:
    """docs/img/weights-STUDY.png from the results folder, as the evaluate stage draws
    metrics/plots/weights.png (the legend names each task's role from the study's params)."""
    from alphavil.config import load_params
    from alphavil.report import plots

    labels = plots.task_labels(load_params(str(folder / "params.yaml")))
    plots.weights_png(read_json(folder / "per_epoch.json")["records"],
                      read_json(folder / "summary.json"), out, labels=labels)
    return out.is_file()


def view_weights(study: str, summary: dict, params: dict, doc: Path, render: bool) -> str:
    e = _alphavil(summary)
    if e is None or "by_epoch" not in e:
        return f"results/{study}/ has no αVIL run.\n"
    tasks = list(e["final_weight"])
    lines = [f"results/{study}/: αVIL's task weight w after each epoch, mean over "
             f"{summary['seeds']} seeds.", "", "| epoch | " + " | ".join(tasks) + " |",
             "|---" * (len(tasks) + 1) + "|"]
    for ep, row in e["by_epoch"].items():
        lines.append(f"| {ep} | " + " | ".join(f"{row['weight'][t]:.3f}" for t in tasks) + " |")
    png = IMAGES / f"weights-{study}.png"
    drawn = render_weights_png(study, RESULTS / study, png) if render else png.is_file()
    if drawn:
        rel = os.path.relpath(png, doc.parent)
        lines += ["", f"![αVIL's task weights per epoch, results/{study}/]({rel})"]
    else:
        lines += ["", "(The weights figure is not yet rendered: `make docs` draws it.)"]
    return "\n".join(lines) + "\n"


def view_ranking(study: str, summary: dict, params: dict) -> str:
    e = _alphavil(summary)
    if e is None or "ranking_weights" not in e:
        return (f"results/{study}/ has no ranking: its tasks do not have both helpful and "
                "harmful roles.\n")
    n = summary["seeds"]
    lines = [f"results/{study}/: ranking score of αVIL's task weights against the tasks' roles "
             "(fraction of (helpful, harmful) pairs ranked right, ties ½; 1 perfect, ½ chance), "
             f"{n} seeds.", "", "| epoch | mean score | seeds ranked perfectly |", "|---|---|---|"]
    for ep, row in e["by_epoch"].items():
        per = [v for v in row.get("ranking_weights_per_seed", {}).values() if v is not None]
        mean = alpha_cell(sum(per) / len(per), 0, 0) if per else "–"
        lines.append(f"| {ep} | {mean} | {sum(v == 1.0 for v in per)}/{n} |")
    lines += ["", f"Final α ranks them at {alpha_cell(e.get('ranking_alpha'), 0, 0)} "
              "(mean over the seeds where it is defined)."]
    return "\n".join(lines) + "\n"


def view_verdict(study: str, summary: dict, params: dict) -> str:
    v = summary.get("verdict")
    if not v:
        return ""  # not computed by this code: the block stays empty
    rule = v["rule"].rstrip(".")  # a sentence of its own in the stored summary
    lines = [f"results/{study}/: does each auxiliary task help the target? Rule: {rule}; "
             f"signal: {v['signal']}; {v['seeds']} seeds.", "",
             "| task | verdict | mean | 95% CI | p (Holm) |", "|---|---|---|---|---|"]
    for t, r in v["tasks"].items():
        ci = f"[{r['ci'][0]:.3g}, {r['ci'][1]:.3g}]" if r.get("ci") else "n/a"
        lines.append(f"| {t} | {r['verdict']} | {r['mean']:.3g} | {ci} | {fmt_p(r.get('p_holm'))} |")
    return "\n".join(lines) + "\n"


def view_machine(study: str, run: dict, params: dict) -> str:
    m, code = run.get("machine") or {}, run.get("code") or {}
    load = m.get("load", run.get("load"))
    parts = [f"{m.get('cpu') or 'unknown CPU'}, {m.get('cores')} cores"]
    if load is not None:  # the 1-minute load average as the run ended
        parts.append(f"load {load[0] if isinstance(load, list) else load}")
    dirty = code.get("dirty_paths") or []
    commit = (code.get("commit") or "unknown")[:10] + (
        f" with uncommitted changes to {', '.join(dirty[:4])}" if dirty else
        " (dirty tree)" if code.get("dirty") else "")
    parts.append(f"code {commit}")
    if params:  # a study's; `make bench` has none
        parts += [f"seeds {_seeds_text(params.get('seeds') or [])}",
                  f"data_seed {(params.get('data') or {}).get('seed')}"]
    return f"results/{study}/ ran on: " + "; ".join(parts) + ".\n"


def view_runtime() -> str:
    """How long `make run` took in the last `make bench`, on what machine."""
    bench, run = RESULTS / "bench" / "bench.json", RESULTS / "bench" / "run.json"
    speed = read_json(bench).get("study_speed") if bench.is_file() else None
    if not speed or not run.is_file():
        return not_measured("bench")
    m = read_json(run).get("machine") or {}
    load = read_json(run).get("load")
    return (f"`make run` ({speed['make_run_seeds']} seeds) took {speed['make_run_s'] / 60:.1f} "
            f"minutes on {m.get('cpu') or 'an unknown CPU'} with {m.get('cores')} cores"
            + (f" (load average {load[0]} at the start of `make bench`)" if load else "")
            + ", measured by `make bench` (results/bench/).\n")


# --- a block ------------------------------------------------------------------------------------

def render(spec: str, doc: Path, draw: bool = False) -> str:
    """The generated text of the block `<!-- results: SPEC -->` in `doc`."""
    words = spec.split()
    split = words.pop() if len(words) == 4 and words[1] == "compare" and words[3] in (
        "dev", "test") else "test"
    if len(words) < 2 or words[1] not in VIEWS or (words[1] == "compare") != (len(words) == 3) \
            or len(words) > 3:
        raise ParamsError(f"{doc}: <!-- results: {spec} -->: expected `STUDY VIEW` with a view "
                          f"of {list(VIEWS)}, or `STUDY compare OTHER [dev]`")
    study, view = words[0], words[1]
    if study == "bench" and view == "runtime":
        return view_runtime()
    if study == "bench" and view in ("bench", "machine"):  # `make bench`, no study file
        table, run = RESULTS / "bench" / "table.md", RESULTS / "bench" / "run.json"
        if view == "bench":
            return table.read_text() if table.is_file() else not_measured("bench")
        return view_machine("bench", read_json(run), {}) if run.is_file() else not_measured(
            "bench")
    for s in [study] + words[2:]:
        if not (STUDIES / f"{s}.yaml").is_file():
            raise ParamsError(f"{doc}: <!-- results: {spec} -->: no study file studies/{s}.yaml")
    missing = [s for s in [study] + words[2:] if not (RESULTS / s / "summary.json").is_file()]
    if missing:
        return "".join(not_measured(s) for s in missing)
    summary, params = pair.load(RESULTS / study)
    if view == "compare":
        other, other_params = pair.load(RESULTS / words[2])
        try:
            records = tuple(read_json(RESULTS / s / "per_epoch.json")["records"]
                            if split == "dev" else None for s in (study, words[2]))
            result = pair.compare(summary, other, split=split, records=records)
        except ParamsError as err:  # e.g. no common seed: say so in the doc
            return f"results/{study}/ and results/{words[2]}/ do not pair: {err}.\n"
        return pair.markdown(result, study, words[2], pair.differing_keys(params, other_params))
    if view == "machine":
        return view_machine(study, read_json(RESULTS / study / "run.json"), params)
    if view == "weights":
        return view_weights(study, summary, params, doc, draw)
    return {"methods": view_methods, "ranking": view_ranking,
            "verdict": view_verdict}[view](study, summary, params)


def rewrite(text: str, doc: Path, draw: bool = False) -> tuple[str, list[str]]:
    """`text` with every block regenerated, and the specs of the blocks that changed."""
    stale: list[str] = []

    def one(match: re.Match) -> str:
        body = render(match.group(2).strip(), doc, draw)
        if body != match.group(3):
            stale.append(match.group(2).strip())
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(one, text), stale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="change nothing; exit 1 naming each block its results would change")
    args = ap.parse_args(argv)
    stale_all = []
    try:
        for doc in doc_files():
            text = doc.read_text()
            new, stale = rewrite(text, doc, draw=not args.check)
            stale_all += [f"{doc}: <!-- results: {s} -->" for s in stale]
            if new != text and not args.check:
                doc.write_text(new)
    except (ParamsError, ArtifactError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    for line in stale_all:
        print(("stale: " if args.check else "rewrote: ") + line)
    return 1 if args.check and stale_all else 0


if __name__ == "__main__":
    sys.exit(main())
