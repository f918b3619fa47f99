"""Shared argument parsing and error reporting for the stage scripts in stages/."""

from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import Callable

from alphavil.config import EPOCH_OVERRIDE_KEYS, Params, ParamsError, load_params
from alphavil.data.digits import DigitSourceError
from alphavil.data.text_sources import SourceError

# Failures caused by the user's params, files or arguments: one line each, no traceback.
USER_ERRORS = (ParamsError, DigitSourceError, SourceError, FloatingPointError)


def parser(description: str, *, seed: bool = False, epoch: bool = False,
           task: bool = False, method: bool = False) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--params", default="params.yaml")
    if method:
        ap.add_argument("--method", required=True)
    if seed:
        ap.add_argument("--seed", type=int, required=True)
    if epoch:
        ap.add_argument("--epoch", required=True, help="epoch id, e.g. ep0")
        # An epoch's overrides from params.yaml, spelled out by dvc.yaml's
        # ${item.ep.overrides} so that changing them invalidates only that epoch onward.
        for key in EPOCH_OVERRIDE_KEYS:
            ap.add_argument(f"--{key}", type=float, default=None)
    if task:
        ap.add_argument("--task", required=True)
    return ap


def overrides(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in EPOCH_OVERRIDE_KEYS}


def _is_user_error(err: Exception) -> bool:
    if isinstance(err, USER_ERRORS):
        return True
    from alphavil.store.artifacts import ArtifactError  # imports torch: only once a stage has started

    return isinstance(err, ArtifactError)


def run(params_path: str, stage: Callable[[ModuleType | None, Params], None], *,
        pipeline: bool = True) -> None:
    """Validate params.yaml, then run `stage(alphavil.pipeline, params)` with the validated
    params (the process's one Params). The params are checked before torch is imported,
    so a bad value is refused within a second, not after seconds of start-up. With
    pipeline=False torch is never imported and `stage` gets None (the check_params stage
    needs only the standard library, yaml and pydantic). Known failures print one line per
    problem and exit 2; anything else is a bug and keeps its traceback."""
    from alphavil.runtime import stagetime  # standard library only: safe before torch

    try:
        params = load_params(params_path)
        if not pipeline:
            stage(None, params)
            stagetime.report("ok")
            return
        from alphavil import pipeline as pipeline_module
        from alphavil.runtime import distributed

        stagetime.mark("enter")  # imports done (ALPHAVIL_TIMING: where start-up time goes)
        distributed.init_from_env()  # no-op unless started by torchrun / accelerate launch
        stage(pipeline_module, params)
    except Exception as err:
        if not _is_user_error(err):
            raise
        stagetime.report("error")
        # a ParamsError has one line per problem; other messages are made one line
        lines = str(err).splitlines() if isinstance(err, ParamsError) else [" ".join(
            str(err).split())]
        for line in lines:
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    distributed.shutdown()
    stagetime.report("ok")
