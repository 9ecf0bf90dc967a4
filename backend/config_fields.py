"""Schema machinery of the config dataclasses: field declarations (``spec``), type coercion,
range checks and leaf iteration. A leaf module: ``backend.config`` and ``backend.method_config``
build on it; nothing here knows a particular section."""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import field


def spec(default, help: str, *, choices=None, ge=None, gt=None, le=None, lt=None,
         method_specific=False, factory=False, suggestions=None):
    """Declare a config field: default, one-line help, allowed values/range. ``method_specific``:
    only the methods whose MethodSpec lists the field in ``reads`` use it (the editor hides it
    for the others). ``suggestions``: common values the editor offers in an editable list (the
    field is validated elsewhere, not restricted to them)."""
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt,
            "method_specific": method_specific, "suggestions": suggestions}
    if factory:
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def type_name(tp) -> str:
    """A type's readable name."""
    return getattr(tp, "__name__", str(tp))


def optional_inner(tp):
    """``X`` for an ``X | None`` annotation, else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def coerce(value, tp, path: str, errors: list):
    """``value`` checked against the annotated type (ints are accepted for floats); None with a
    sentence in ``errors`` when it does not fit. For ``X | None`` a None value is accepted (and
    returned: the field keeps its default, None = unset)."""
    inner = optional_inner(tp)
    if inner is not None:
        return None if value is None else coerce(value, inner, path, errors)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is list:
        if isinstance(value, (list, tuple)) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return [float(v) for v in value]
        errors.append(f"{path} must be a list of numbers, got {value!r}")
        return None
    errors.append(f"{path} must be of type {type_name(tp)}, got {type(value).__name__} {value!r}")
    return None


def range_errors(path: str, meta: dict, value) -> list[str]:
    """The choice/bound/finiteness sentences of one field's value (empty when it is fine)."""
    errs = []
    if meta.get("choices") is not None and value not in meta["choices"]:
        errs.append(f"{path} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
    numeric = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else (
        value if isinstance(value, list) else [])
    if any(isinstance(v, float) and not math.isfinite(v) for v in numeric):
        return errs + [f"{path} must be a finite number, got {value!r}"]
    for v in numeric:
        for key, op, word in (("gt", lambda a, b: a > b, ">"), ("ge", lambda a, b: a >= b, ">="),
                              ("lt", lambda a, b: a < b, "<"), ("le", lambda a, b: a <= b, "<=")):
            bound = meta.get(key)
            if bound is not None and not op(v, bound):
                errs.append(f"{path} must be {word} {bound:g}, got {value!r}")
                break
    return errs


def iter_fields(obj, prefix: str = ""):
    """Yield (path, dataclass field, value) for every leaf field of a config dataclass."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from iter_fields(value, prefix + f.name + ".")
        else:
            yield prefix + f.name, f, value


def get_path(obj, path: str):
    """The attribute at dotted ``path`` of a config object."""
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj
