"""params.yaml values must never become a shell command or a path outside the repository.

DVC renders `${...}` values into a stage's `cmd` as plain text (only string values inside an
interpolated mapping are quoted) and into its output paths, and it removes a stage's outputs
before running its command. So a seed `"1;touch x"` would run `touch x`, and a baseline
`"../../victim"` would make DVC delete a folder outside the repository, both before any stage
script could refuse the value. `check` therefore runs before DVC acts on any stage: as the
first stage of dvc.yaml (`check_params`, which every other stage depends on through
`prepare`), and in the project's launchers before they start DVC (`make run`,
`python -m alphavil.workflow.study`). It validates params.yaml (config.validate: integer seeds,
task names, the epoch chain, known override keys, registered baselines) and then checks what
DVC itself renders from it: every command made only of plain words, every path relative and
inside the repository. What remains the user's responsibility: docs/pipeline.md, "Safety".

    python -m alphavil.workflow.safety      # exit 2 with one line per problem
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from alphavil.config import Params, ParamsError, load_params

# What a rendered command may contain: the templates' words (python, stage scripts, --flags)
# and the values validate() lets through (integers, numbers such as 1e-05, names). Nothing
# the shell treats specially: no ; & | $ ` ' " \ < > ( ) { } [ ] * ? ~ # ! or line breaks.
_CMD_CHARS = "A-Za-z0-9_.,:=+@/ -"
# One component of a rendered dependency or output path.
_PLAIN_PART = re.compile(r"[A-Za-z0-9_.,=+@-]+")

TOKEN = "params.yaml passed alphavil/safety.py (docs/pipeline.md, Safety)\n"


def path_problem(path: str) -> str | None:
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") or not _PLAIN_PART.fullmatch(p)
                                   for p in parts):
        return (f"path {path!r}: expected a relative path inside the repository made of "
                "letters, digits and ._-+@=, (no '..')")
    return None


def cmd_problem(cmd: str) -> str | None:
    bad = sorted(set(re.sub(f"[{_CMD_CHARS}]", "", cmd)))
    if bad:
        return f"command {cmd!r}: the shell would act on {''.join(bad)!r}"
    return None


def rendered_problems(root: str | Path = ".") -> list[str]:
    """Every unsafe command or path of the stages DVC renders from dvc.yaml and params.yaml."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    problems = []
    try:
        with Repo(str(root)) as repo:
            for stage in repo.index.stages:
                cmds = stage.cmd if isinstance(stage.cmd, list) else [stage.cmd or ""]
                found = [cmd_problem(c) for c in cmds]
                found += [path_problem(str(x.def_path)) for x in (*stage.deps, *stage.outs)]
                problems += [f"stage {stage.addressing!r}: {p}" for p in found if p]
    except DvcException as err:  # e.g. a mapping where dvc.yaml interpolates a scalar
        return [f"dvc.yaml: DVC cannot render it with params.yaml: {err}"]
    return problems


def check(root: str | Path = ".", params: Params | None = None) -> None:
    """Raise ParamsError unless params.yaml is valid and everything DVC renders from it
    is plain. DVC reads `params.yaml` at the root, so that is the file checked (`params`:
    that file, already validated)."""
    root = Path(root)
    if params is None:
        load_params(root / "params.yaml")
    problems = rendered_problems(root)
    if problems:
        lines = "\n  - ".join(problems)
        raise ParamsError(f"dvc.yaml rendered with params.yaml is unsafe to run:\n  - {lines}")


def check_stage(token: str | Path, params: Params) -> None:
    """The `check_params` stage: check, then write its constant output, so that stages
    depending on it are not invalidated by the params edits it checks."""
    check(params=params)
    # imported here: artifacts imports torch, and this stage must stay torch-free (it runs
    # before every other stage, and tests/test_bad_params.py forbids torch before validation)
    from alphavil.store.artifacts import write_text

    write_text(token, TOKEN)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=".", help="repository root holding dvc.yaml")
    args = ap.parse_args(argv)
    try:
        check(args.root)
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
