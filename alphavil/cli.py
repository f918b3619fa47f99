"""Shared argument parsing and error reporting for the stage scripts in stages/."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from .artifacts import ArtifactError
from .config import EPOCH_OVERRIDE_KEYS, ParamsError
from .digits import DigitSourceError
from .nlu.sources import SourceError


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


def run(fn: Callable[[], None]) -> None:
    """Known failures print one clear line and exit 2 instead of a traceback."""
    from . import distributed

    distributed.init_from_env()  # no-op unless started by torchrun / accelerate launch
    try:
        fn()
    except (ParamsError, ArtifactError, DigitSourceError, SourceError,
            FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    distributed.shutdown()
