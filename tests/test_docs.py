"""README.md and docs/*.md: every measured figure comes from stored results through
`python -m alphavil.workflow.docs`, none stands outside a results block, and every command
they show runs as pasted (module, arguments, params keys, make targets, files)."""

import argparse
import copy
import importlib.util
import json
import re
import runpy
import shlex
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from alphavil.config import ParamsError, validate
from alphavil.report import fmt, fmt_p, summarise
from alphavil.workflow import docs
from testkit.params import ROOT, repo_params, tiny_raw

sys.path.insert(0, str(Path(__file__).parent))
from docfigures import figures  # noqa: E402

DOCS = [p.relative_to(ROOT) for p in docs.doc_files(ROOT)]


# --- results blocks ----------------------------------------------------------------------------

def test_the_committed_docs_are_what_the_committed_results_give(monkeypatch, capsys):
    """`make docs` has been run: no block differs from what results/ (or its absence) gives."""
    monkeypatch.chdir(ROOT)
    assert docs.main(["--check"]) == 0, capsys.readouterr().out


def fake_summary(seeds=(0, 1, 2), verdict=True) -> tuple[dict, dict]:
    """A summary.json computed by alphavil.report from hand-made evaluation records, and the
    params it ran with (roles, so the ranking is defined)."""
    raw = tiny_raw(seeds=list(seeds), baselines=["single_task", "uniform"], tasks={
        "left": {"label": "left"}, "good": {"label": "left", "role": "helpful"},
        "bad": {"label": "left", "label_noise": 1.0, "role": "harmful"}})
    params = validate(raw)
    records = []
    for m_i, method in enumerate(params.methods):
        for seed in params.seeds:
            for n, ep in enumerate(["base"] + [e.id for e in params.epochs]):
                acc = 0.5 + 0.1 * n + 0.01 * m_i + 0.003 * seed * (method == "alphavil")
                rec = {"method": method, "seed": seed, "epoch": ep, "n": n,
                       "dev": {"acc": acc, "loss": 1 - acc}, "test": {"acc": acc + 0.001}}
                if method == "alphavil":
                    rec["weights"] = {"left": 1.0 + n, "good": 1.0 - 0.1 * n * seed,
                                      "bad": 1.0 - 0.2 * n}
                    rec["alpha"] = {t: (None if ep == "base" else w)
                                    for t, w in rec["weights"].items()}
                records.append(rec)
    summary = summarise(params, records)
    summary.pop("verdict", None)  # a summary written before verdicts existed; or a fixed one:
    if verdict:
        summary["verdict"] = {"rule": "mean weight after the last epoch", "signal": "w",
                              "seeds": len(seeds), "tasks": {
                                  "good": {"verdict": "helped", "mean": 0.25,
                                           "ci": [0.1, 0.4], "p_holm": 0.012},
                                  "bad": {"verdict": "no evidence", "mean": -0.01,
                                          "ci": None, "p_holm": 0.9}}}
    return summary, params.dump()


def results(root: Path, study: str, summary: dict, params: dict) -> None:
    out = root / "results" / study
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "per_epoch.json").write_text(json.dumps({"records": [{"seed": 0}]}))
    (out / "params.yaml").write_text(yaml.safe_dump(params))
    (out / "run.json").write_text(json.dumps({
        "machine": {"cpu": "Some CPU 9000", "cores": 2, "load": 1.5},
        "code": {"commit": "0123456789abcdef", "dirty": False}}))


BLOCKS = ["demo methods", "demo weights", "demo ranking", "demo verdict", "demo machine",
          "demo compare other", "missing methods", "bench bench", "bench machine"]


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A repository layout: study files, results of two studies and docs with one block each."""
    for study in ("demo", "other", "missing"):
        (tmp_path / "studies").mkdir(exist_ok=True)
        (tmp_path / "studies" / f"{study}.yaml").write_text("seeds: [0]\n")
    summary, params = fake_summary()
    results(tmp_path, "demo", summary, params)
    other = copy.deepcopy(summary)
    for s, v in other["methods"]["alphavil"]["per_seed_test"].items():
        other["methods"]["alphavil"]["per_seed_test"][s] = v - 0.01 * (int(s) + 1)
    results(tmp_path, "other", other, {**params, "target": "elsewhere"})
    (tmp_path / "docs").mkdir()
    text = "".join(f"Intro.\n\n<!-- results: {b} -->\nold\n<!-- /results -->\n\n" for b in BLOCKS)
    (tmp_path / "README.md").write_text(text)
    (tmp_path / "docs" / "page.md").write_text("<!-- results: demo weights -->\n<!-- /results -->\n")
    monkeypatch.chdir(tmp_path)
    from alphavil.report import plots  # the figure itself: tests/test_verdict.py

    monkeypatch.setattr(plots, "weights_png", lambda records, summary, out_path, labels=None:
                        Path(out_path).parent.mkdir(parents=True, exist_ok=True) or
                        Path(out_path).write_bytes(b"png"))
    return tmp_path, summary


def block(text: str, spec: str) -> str:
    return re.search(rf"<!-- results: {spec} -->\n(.*?)<!-- /results -->", text, re.S).group(1)


def test_every_view_is_written_from_the_study_results_and_check_names_stale_blocks(site, capsys):
    root, summary = site
    assert docs.main(["--check"]) == 1
    stale = capsys.readouterr().out
    assert all(f"README.md: <!-- results: {b} -->" in stale for b in BLOCKS)
    assert (root / "README.md").read_text().count("\nold\n") == len(BLOCKS)  # --check writes nothing
    assert docs.main([]) == 0
    capsys.readouterr()
    assert docs.main(["--check"]) == 0
    text = (root / "README.md").read_text()

    methods = block(text, "demo methods")
    a, vs = summary["methods"]["alphavil"], summary["alphavil_vs"]["uniform"]
    assert f"| alphavil | {fmt(a['test'])} ± {fmt(a['test_std'])} | {fmt(a['best_dev']['test'])} |" in methods
    assert (f"| uniform | {fmt(summary['methods']['uniform']['test'])} ± "
            f"{fmt(summary['methods']['uniform']['test_std'])}") in methods
    assert (f"| {fmt(vs['mean_diff'])} | [{fmt(vs['ci95_low'])}, {fmt(vs['ci95_high'])}] | "
            f"{fmt_p(vs['p_holm'])} | {vs['wins']}/{vs['n']} |") in methods
    assert "seeds 0–2 (3), data_seed 0" in methods

    weights = block(text, "demo weights")
    last = summary["methods"]["alphavil"]["by_epoch"]["ep1"]["weight"]
    assert f"| ep1 | {last['left']:.3f} | {last['good']:.3f} | {last['bad']:.3f} |" in weights
    assert "not yet rendered" in weights or "![" in weights

    ranking = block(text, "demo ranking")
    per = summary["methods"]["alphavil"]["by_epoch"]["ep1"]["ranking_weights_per_seed"].values()
    assert f"| ep1 | {sum(per) / len(per):.3f} | {sum(v == 1.0 for v in per)}/3 |" in ranking

    assert "| good | helped | 0.25 | [0.1, 0.4] | 0.012 |" in block(text, "demo verdict")
    assert "| bad | no evidence | -0.01 | n/a | 0.9 |" in block(text, "demo verdict")
    machine = block(text, "demo machine")
    assert "Some CPU 9000, 2 cores; load 1.5; code 0123456789;" in machine
    assert "seeds 0–2; data_seed 0" in machine

    compare = block(text, "demo compare other")
    assert "| alphavil | 2.00 |" in compare  # demo minus other: 1, 2, 3 pp over the seeds
    assert "params that differ: target" in compare
    assert block(text, "missing methods") == ("Not measured with the current code yet: "
                                              "`python -m alphavil.workflow.study run "
                                              "studies/missing.yaml -j 2`.\n")
    assert block(text, "bench bench") == "Not measured with the current code yet: `make bench`.\n"

    # new results: the blocks they feed are stale, and rewritten from them
    (root / "results" / "bench").mkdir()
    (root / "results" / "bench" / "table.md").write_text("| measure | value |\n|---|---|\n")
    assert docs.main(["--check"]) == 1
    assert capsys.readouterr().out == "stale: README.md: <!-- results: bench bench -->\n"
    docs.main([])
    assert block((root / "README.md").read_text(), "bench bench") == "| measure | value |\n|---|---|\n"


def test_a_summary_without_a_verdict_leaves_its_block_empty(site):
    root, _ = site
    summary, params = fake_summary(verdict=False)
    results(root, "demo", summary, params)
    docs.main([])
    assert block((root / "README.md").read_text(), "demo verdict") == ""


def test_the_weights_figure_is_drawn_by_weights_png_where_it_exists(site, monkeypatch):
    """make docs draws docs/img/weights-<study>.png from the study's records and summary
    (legend from its params) and links it relative to each doc."""
    from alphavil.report import plots

    root, summary = site
    drawn = []

    def weights_png(records, summary_arg, out_path, labels=None):
        drawn.append((records, summary_arg["seeds"], Path(out_path), labels))
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Path(out_path).write_bytes(b"png")

    monkeypatch.setattr(plots, "weights_png", weights_png)
    docs.main([])
    records, seeds, out, labels = drawn[0]
    assert records == [{"seed": 0}] and seeds == summary["seeds"]
    assert out == Path("docs/img/weights-demo.png") and "left (target)" in labels.values()
    assert "(docs/img/weights-demo.png)" in block((root / "README.md").read_text(), "demo weights")
    assert "(img/weights-demo.png)" in (root / "docs" / "page.md").read_text()
    assert docs.main(["--check"]) == 0  # --check draws nothing and finds the figure linked


@pytest.mark.parametrize("spec, message", [
    ("demo", "expected `STUDY VIEW`"), ("demo tables", "expected `STUDY VIEW`"),
    ("demo compare", "STUDY compare OTHER"), ("nostudy methods", "no study file studies/nostudy.yaml"),
])
def test_a_bad_marker_is_a_one_line_error(site, spec, message, capsys):
    root, _ = site
    (root / "docs" / "bad.md").write_text(f"<!-- results: {spec} -->\n<!-- /results -->\n")
    assert docs.main(["--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "docs/bad.md" in err[0]


# --- no measured figure outside a results block --------------------------------------------------

@pytest.mark.parametrize("doc", DOCS, ids=str)
def test_no_measured_figure_stands_outside_a_results_block(doc):
    hits = figures((ROOT / doc).read_text())
    assert not hits, "\n".join(f"{doc}:{i}: {fig!r} in: {line}" for i, fig, line in hits)


@pytest.mark.parametrize("text", [
    "| alphavil | 86.04 ± 1.63 | 84.00 |",                      # a table of results
    "+0.94 pp over single-task (t-test p = 0.049, Holm 0.15)",   # prose
    "an αVIL epoch costs 1.46× a uniform-MTL epoch",
    "took 386 s wall", "peak memory 23.1 MiB", "5.6 hours of compute", "in 9 of 10 seeds",
    "αVIL wins 8/10", "uniform MTL 71.05", "ends at 0.75 in every seed",
])
def test_a_measured_figure_is_found(text):
    assert figures(text + "\n")


@pytest.mark.parametrize("text", [
    "Python ≥ 3.10 and torch 2.13", "`alpha.lr: 0.05` and `train.lr=0.001`",
    "```bash\ndvc exp run -S alpha.lr=0.1  # 0.1\n```", "see [arXiv 2405.07769](https://arxiv.org/abs/2405.07769)",
    "<!-- results: a methods -->\n| x | 86.04 ± 1.63 |\n<!-- /results -->",
    "5 seeds, 3 epochs and 3,000 training images", "its 95% t interval", "ties ½; 0.5 is chance",
    "the paper reports 84.5 on RTE [^paper]", "seeds 0–4 on 2026-12-01",
])
def test_a_non_measurement_is_not_a_figure(text):
    assert not figures(text + "\n")


# --- every command runs as pasted ----------------------------------------------------------------

class _Parsed(BaseException):
    """Raised once argparse accepted the arguments: nothing of the command runs."""


def commands(text: str) -> list[str]:
    """Shell commands in fenced code blocks (other than data formats) and inline code that
    start with python -m, make, dvc exp run or bash; continuation lines joined."""
    out = []
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        if lang not in ("yaml", "json", "python", "text", "toml"):
            out += body.replace("\\\n", " ").splitlines()
    out += re.findall(r"`((?:python -m|make|dvc exp run|bash) [^`]*)`", text)
    parts = []
    for line in out:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue
        command: list[str] = []
        for t in tokens + ["&&"]:
            if t in ("&&", "||", ";", "|"):
                if command and command[0] in ("python", "make", "dvc", "bash"):
                    parts.append(command)
                command = []
            else:
                command.append(t)
    return parts


def placeholder(token: str) -> bool:
    """A template's slot (CONFIG, [-j N], <study>, ...), not an argument to check."""
    return bool(re.fullmatch(r"\[[A-Z-].*|.*[A-Z.]\]|\.\.\.|…|[A-Z][A-Z_]*(\.yaml|\.\.\.)?"
                             r"|[\w.]+=[A-Z][A-Z_]*|\w+-[A-Z][A-Z_]*|.*/[A-Z][A-Z_]*\.\w+", token)
                ) or "<" in token


def check_python_module(module: str, args: list[str], monkeypatch) -> str | None:
    if importlib.util.find_spec(module) is None:
        return f"no module {module}"
    source = Path(importlib.util.find_spec(module).origin).read_text()
    if "ArgumentParser" not in source and module != "alphavil.workflow.study":
        return None  # takes no arguments the docs could get wrong
    original = argparse.ArgumentParser.parse_args

    def parse_only(self, *a, **k):
        original(self, *a, **k)
        raise _Parsed

    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", parse_only)
        m.setattr(sys, "argv", [module, *args])
        try:
            with warnings.catch_warnings():  # runpy: the package imported it already
                warnings.simplefilter("ignore", RuntimeWarning)
                result = runpy.run_module(module, run_name="__main__", alter_sys=True)
        except _Parsed:
            return None
        except SystemExit as done:
            return None if done.code in (0, None) else f"arguments refused (exit {done.code})"
    return None if "main" not in result else "ran without parsing its arguments"


def check_dvc_set(args: list[str]) -> str | None:
    raw = repo_params()
    for flag, value in zip(args, args[1:]):
        if flag != "-S" or placeholder(value):
            continue
        key, _, text = value.partition("=")
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            return f"-S {key}: not a params key"
        node[leaf] = yaml.safe_load(text)
    try:
        validate(raw, "docs")
    except ParamsError as err:
        return f"-S values do not validate: {' '.join(str(err).split())}"
    return None


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))


def command_problems(text: str, monkeypatch) -> list[str]:
    """What would fail of each command in `text`, run from the repository root."""
    monkeypatch.chdir(ROOT)
    problems, targets = [], make_targets()
    for cmd in commands(text):
        if any(placeholder(t) for t in cmd):
            continue
        for t in cmd:  # files of the repository the command names
            if re.fullmatch(r"(configs|studies|benchmarks|stages)/[\w./-]+\.(yaml|sh|py)", t) \
                    and not (ROOT / t).is_file():
                problems.append(f"{' '.join(cmd)}: no file {t}")
        if cmd[:2] == ["python", "-m"] and len(cmd) > 2:
            if cmd[2] in ("dvc", "pytest", "pip"):
                continue
            why = check_python_module(cmd[2], cmd[3:], monkeypatch)
        elif cmd[0] == "make":
            missing = [t for t in cmd[1:] if "=" not in t and not t.startswith("-")
                       and t not in targets]
            why = f"no make target {missing}" if missing else None
        elif cmd[:3] == ["dvc", "exp", "run"]:
            why = check_dvc_set(cmd[3:])
        else:
            why = None
        if why:
            problems.append(f"{' '.join(cmd)}: {why}")
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=str)
def test_every_command_in_the_docs_runs_as_pasted(doc, monkeypatch):
    problems = command_problems((ROOT / doc).read_text(), monkeypatch)
    assert not problems, f"{doc}:\n" + "\n".join(problems)


@pytest.mark.parametrize("line, broken", [
    ("python -m alphavil.workflow.lrgrid test --seeds 5,...,14", True),
    ("python -m alphavil.workflow.lrgrid test --seeds 5,6,7", False),
    ("dvc exp run -S 'seeds=[0,...,14]'", True),
    ("dvc exp run -S 'seeds=[0,1,14]'", False),
    ("dvc exp run -S alpha.gaurd=true", True),
    ("make heldout", False), ("make nosuchtarget", True),
    ("python -m alphavil.workflow.nosuchmodule", True),
    ("python -m alphavil.workflow.study run studies/nosuch.yaml -j 2", True),
    ("python -m alphavil.workflow.study run studies/heldout.yaml -j 2", False),
])
def test_the_command_check_finds_what_would_fail(monkeypatch, line, broken):
    for text in (f"```bash\n{line}   # a comment\n```\n", f"Run `{line}` to see.\n"):
        assert bool(command_problems(text, monkeypatch)) == broken, text


# --- links between the documents -----------------------------------------------------------------

# written on another line of work; linked from the README before it lands
PENDING: set[str] = set()


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but - and _ dropped, spaces to -."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.*)$", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M),
                                re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=str)
def test_relative_links_reach_a_file_and_heading(doc):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", (ROOT / doc).read_text()):
        if re.match(r"\w+://|#|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (ROOT / doc).parent / path
        rel = file.resolve().relative_to(ROOT.resolve()).as_posix() if file.exists() else path
        if not file.exists():
            if str(Path(doc).parent / path).lstrip("./") not in PENDING:
                broken.append(target)
        elif anchor and anchor not in anchors(file.read_text()):
            broken.append(f"{target} (no heading #{anchor} in {rel})")
    assert not broken, f"{doc}: " + ", ".join(broken)
