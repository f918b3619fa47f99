"""params.yaml: its schema, loading and validation.

Every stage validates params.yaml before it imports torch or touches data (alphavil/cli.py),
so a bad value stops the pipeline within a second, one line per problem, each naming the
key and what was expected. The result is one typed, default-filled `Params` object, built
once per process and passed down: every param is read as an attribute (`params.train.lr`),
its default and rules written once, in the schema (schema.py and the setting's vision.py /
nlu.py); messages.py turns pydantic's errors into our lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from alphavil.config.files import check_data_source, parse_yaml, read_yaml
from alphavil.config.images import ImagesParams
from alphavil.config.messages import ParamsError, lines
from alphavil.config.nlu import NLUParams
from alphavil.config.schema import EPOCH_OVERRIDE_KEYS, EpochSpec, Params, TaskSpec
from alphavil.config.vision import VisionParams

__all__ = ["EPOCH_OVERRIDE_KEYS", "EpochSpec", "Params", "ParamsError", "TaskSpec", "as_params",
           "check_data_source", "load_params", "parse_yaml", "read_yaml", "validate"]

# each of registry.SETTINGS (tests/test_registry.py)
BY_SETTING: dict[str, type[Params]] = {"vision": VisionParams, "nlu": NLUParams,
                                       "images": ImagesParams}


def validate(raw: Any, source: str = "params.yaml") -> Params:
    """The typed params; a ParamsError listing every problem found otherwise."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level, got "
                          f"{type(raw).__name__}")
    setting = raw.get("setting", Params.model_fields["setting"].default)
    # an unknown setting: the sections that do not depend on it are still checked
    cls = BY_SETTING.get(setting, Params) if isinstance(setting, str) else Params
    try:
        return cls.model_validate(raw)
    except ValidationError as err:
        raise ParamsError("\n".join(f"{source}: {line}" for line in lines(err, cls, raw))
                          ) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    return validate(read_yaml(path), str(path))


def as_params(params: Params | str | Path) -> Params:
    """`params` itself, or the params.yaml at that path, loaded."""
    return params if isinstance(params, Params) else load_params(params)
