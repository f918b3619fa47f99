"""pydantic's validation errors as our one-line messages, one per problem:

    params.yaml: train.lr: expected a number > 0.0, got -1
    params.yaml: alpha.gaurd: unknown key (did you mean alpha.guard?); expected one of init, ...
    params.yaml: target: missing; expected a task name (one of the keys of tasks)

What a key expects is read off the schema: a field's description where it has one, else
its type and bounds. Checks that relate keys to each other raise `problems` (below), which
pydantic places and collects like its own errors.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Literal, Union

import annotated_types as at
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

INT64_MAX = 2**63 - 1  # the upper bound of counts: shown only to a value beyond it


class ParamsError(ValueError):
    """A setting is wrong: a params.yaml value, a stage argument or an ALPHAVIL_* variable.
    The message has one line per problem, each naming the key."""


# --- what a check reports ------------------------------------------------------------
# A check that relates keys to each other (or a mapping whose keys depend on another
# value) raises these; pydantic places them under the model that ran the check.

def problem(expected: str) -> PydanticCustomError:
    """The value being validated is wrong (raise it from a validator)."""
    return PydanticCustomError("params", "expected {expected}", {"expected": expected})


def bad(loc: tuple, expected: str, got: Any) -> InitErrorDetails:
    return InitErrorDetails(type=problem(expected), loc=loc, input=got)


def missing(loc: tuple, expected: str) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError(
        "params_missing", "missing; expected {expected}", {"expected": expected}),
        loc=loc, input=None)


def unknown(loc: tuple, options: list[str], got: Any) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError(
        "params_unknown", "unknown key", {"options": ", ".join(options)}), loc=loc, input=got)


def problems(found: list[InitErrorDetails]) -> None:
    """Raise every problem a check found at once; nothing when there is none."""
    if found:
        raise ValidationError.from_exception_data("params", found)


# --- reading the schema along an error's location ---------------------------------------

def _unwrap(tp: Any) -> tuple[Any, list, str | None]:
    """(type without Annotated / Optional, its constraints, its description)."""
    metadata, description = [], None
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp, *extra = typing.get_args(tp)
            for m in extra:
                if isinstance(m, FieldInfo):
                    metadata += m.metadata
                    description = description or m.description
                else:
                    metadata.append(m)
        elif origin in (Union, types.UnionType) and type(None) in typing.get_args(tp):
            rest = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = rest[0] if len(rest) == 1 else Union[tuple(rest)]
        else:
            return tp, metadata, description


def _bound(metadata: list, kind: str) -> str:
    low = next(((m.ge, "[") for m in metadata if isinstance(m, at.Ge)),
               next(((m.gt, "(") for m in metadata if isinstance(m, at.Gt)), None))
    high = next((m.le for m in metadata if isinstance(m, at.Le) and m.le != INT64_MAX), None)
    if low is not None and high is not None:
        return f"{kind} in {low[1]}{low[0]}, {high}]"
    if low is not None:
        return f"{kind} {'>=' if low[1] == '[' else '>'} {low[0]}"
    return f"{kind} <= {high}" if high is not None else kind


def _members(tp: Any, discriminator: str) -> dict[str, type[BaseModel]]:
    """A tagged union's models by tag (the value of their discriminator field)."""
    return {typing.get_args(m.model_fields[discriminator].annotation)[0]: m
            for m in typing.get_args(_unwrap(tp)[0])}


def _discriminator(tp: Any) -> str:
    """The key that tells a tagged union's models apart (Field(discriminator=...))."""
    return next(m.discriminator for m in typing.get_args(tp)[1:]
                if isinstance(m, FieldInfo) and m.discriminator)


def expected(tp: Any, info: FieldInfo | None = None) -> str:
    """What a value of type `tp` (with the field's constraints) must be, in words."""
    if info is not None:
        tp = typing.Annotated[info.annotation, info]
    tp, metadata, description = _unwrap(tp)
    if description:
        return description
    if typing.get_origin(tp) is Literal:
        return f"one of {sorted(map(str, typing.get_args(tp)))}"
    if tp is bool:
        return "true or false"
    if tp in (int, float):
        return _bound(metadata, "an integer" if tp is int else "a number")
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"a mapping with keys {', '.join(tp.model_fields)}"
    return {str: "a string", list: "a list", dict: "a mapping"}.get(typing.get_origin(tp) or tp,
                                                                      "a valid value")


def did_you_mean(value: Any, options, prefix: str = "") -> str:
    if not isinstance(value, str):
        return ""
    options = [str(o) for o in options]
    # a close spelling, else a valid name that starts the given one (lrate -> lr)
    near = difflib.get_close_matches(value, options, n=1) or [
        o for o in options if len(o) > 1 and value.startswith(o)][:1]
    return f" (did you mean {prefix}{near[0]}?)" if near else ""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:70] + " ..."


def _looks_numeric(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


class _Where:
    """Where an error's location points: the dotted key, the field there (None past the
    schema), the model holding it, the raw value, and a rank that sorts problems in the
    schema's order with a mapping's unknown keys first."""

    def __init__(self, root: type[BaseModel], loc: tuple, raw: Any):
        self.key, self.parent, self.field, self.tp = "", root, None, root
        self.value, self.rank = raw, []
        self.item_tp = self.bad_name = None  # set where an item of a list / a dict key is bad
        parts = list(loc)
        while parts:
            part = parts.pop(0)
            tp = _unwrap(self.tp)[0]
            origin = typing.get_origin(tp)
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                self.parent, self.field = tp, tp.model_fields.get(part)
                self.tp = self.field.annotation if self.field else None
                self.rank.append(list(tp.model_fields).index(part) if self.field else -1)
                self._down(part, f".{part}")
            elif origin is list:
                item = typing.get_args(tp)[0]
                if not _is_model(_unwrap(item)[0]):
                    self.item_tp = item  # a list of values is one key, shown whole
                    return
                self.tp, self.field = item, None
                self.rank.append(part)
                self._down(part, f"[{part}]")
            elif origin is dict and typing.get_args(tp):
                key_tp, value_tp = typing.get_args(tp)
                if parts and parts[0] == "[key]":
                    self.tp, self.field, self.bad_name = key_tp, None, part
                    return
                self.tp, self.field = value_tp, None
                self._down(part, f".{part}")
            elif origin in (Union, types.UnionType):  # the tag pydantic puts in the location
                self.tp = _members(tp, _discriminator(self.tp)).get(part)
                self.field = None
            else:  # past the schema (a mapping a check looks into)
                self.tp = None
                self._down(part, f".{part}")

    def _down(self, part: Any, text: str) -> None:
        self.key = (self.key + text).lstrip(".")
        if isinstance(self.value, dict):
            self.value = self.value.get(part)
        elif isinstance(self.value, list) and isinstance(part, int) and part < len(self.value):
            self.value = self.value[part]
        else:
            self.value = None


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _line(err: dict, root: type[BaseModel], raw: Any) -> str:
    kind, ctx, got = err["type"], err.get("ctx") or {}, err.get("input")
    where = _Where(root, err["loc"], raw)
    key = where.key
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        field = ctx["discriminator"].strip("'")
        tags = sorted(_members(where.tp, field))
        key = f"{key}.{field}"
        if kind == "union_tag_not_found":
            return f"{key}: missing; expected one of {tags}"
        return f"{key}: expected one of {tags}{did_you_mean(ctx['tag'], tags)}, got " \
               f"{_shown(ctx['tag'])}"
    if kind == "extra_forbidden":
        options = list(where.parent.model_fields)
        prefix = key.rpartition(".")[0]
        hint = did_you_mean(str(err["loc"][-1]), options, f"{prefix}." if prefix else "")
        if not hint and where.parent is root:  # lr: -> train.lr or alpha.lr?
            near = [f"{name}.{err['loc'][-1]}" for name, f in root.model_fields.items()
                    if err["loc"][-1] in getattr(_unwrap(f.annotation)[0], "model_fields", {})]
            hint = f" (did you mean {' or '.join(near)}?)" if near else ""
        return f"{key}: unknown key{hint}; expected one of {', '.join(options)}"
    if kind == "params_unknown":
        options = ctx["options"].split(", ")
        hint = did_you_mean(str(err["loc"][-1]), options, f"{key.rpartition('.')[0]}.")
        return f"{key}: unknown key{hint}; expected one of {ctx['options']}"
    if kind == "params_missing":
        return f"{key}: missing; expected {ctx['expected']}"
    if kind == "params":
        return f"{key}: expected {ctx['expected']}, got {_shown(got)}"
    if where.bad_name is not None:
        return f"{key}: expected {expected(where.tp)}, got {_shown(where.bad_name)}"
    text = expected(where.tp, where.field) if where.tp is not None else "a valid value"
    if kind == "missing":
        return f"{key}: missing; expected {text}"
    if where.item_tp is not None:  # an item of a list: the list's expectation, the whole list
        item, _, _ = _unwrap(where.item_tp)
        if typing.get_origin(item) is Literal:
            text += did_you_mean(got, typing.get_args(item))
        got = where.value
    elif kind == "literal_error":
        text += did_you_mean(got, typing.get_args(_unwrap(where.tp)[0]))
    elif kind == "finite_number":
        text = "a finite number"
    elif kind in ("int_type", "float_type") and _looks_numeric(got):
        text += " (YAML reads 1e9 as text: write 1.0e+9 or the digits)"
    elif kind == "less_than_equal" and ctx.get("le") == INT64_MAX:
        text += " that fits 64 bits (< 2**63)"
    return f"{key}: expected {text}, got {_shown(got)}"


def lines(err: ValidationError, root: type[BaseModel], raw: Any) -> list[str]:
    """One line per problem, in the schema's order with a mapping's unknown keys before
    the problems inside it; a problem found twice (two items of one list) once."""
    found = sorted(err.errors(), key=lambda e: _Where(root, e["loc"], raw).rank)
    return list(dict.fromkeys(_line(e, root, raw) for e in found))
