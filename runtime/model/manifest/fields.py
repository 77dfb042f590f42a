"""Typed reads of one ``manifest.json`` field: each getter checks the field's JSON type and
raises :class:`FieldError` with its dotted path (``model.sha256``), so that every block of
:mod:`vggsim.model.manifest.schema` checks its fields the same way and a bad file names the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

T = TypeVar("T")
_MISSING: Any = object()


class FieldError(ValueError):
    """One manifest field is missing or malformed; ``field`` is its dotted path."""

    def __init__(self, field_path: str, problem: str) -> None:
        self.field = field_path
        self.problem = problem
        super().__init__(f"field `{field_path}` {problem}")


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def get_any(data: Mapping[str, Any], key: str, where: str, default: Any = _MISSING) -> Any:
    """The field as it is, of any JSON type; FieldError when it is missing and has no default."""
    if key in data:
        return data[key]
    if default is _MISSING:
        raise FieldError(_name(where, key), "is missing")
    return default


def _checked(data: Mapping[str, Any], key: str, where: str, default: Any, ok: Callable[[Any], bool],
             expected: str) -> Any:
    value = get_any(data, key, where, default)
    if value is not default and not ok(value):
        raise FieldError(_name(where, key), f"must be {expected}, not {json.dumps(value, default=repr)[:60]}")
    return value


def get_str(data: Mapping[str, Any], key: str, where: str = "", default: Any = _MISSING) -> Any:
    return _checked(data, key, where, default, lambda v: isinstance(v, str), "a string")


def get_int(data: Mapping[str, Any], key: str, where: str = "", default: Any = _MISSING) -> Any:
    return _checked(data, key, where, default, lambda v: type(v) is int, "an integer")


def get_bool(data: Mapping[str, Any], key: str, where: str = "", default: Any = _MISSING) -> Any:
    return _checked(data, key, where, default, lambda v: isinstance(v, bool), "true or false")


def get_float(data: Mapping[str, Any], key: str, where: str = "", default: Any = _MISSING) -> Any:
    finite = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    number = _checked(data, key, where, default, finite, "a finite number")
    return number if number is default else float(number)


def get_block(data: Mapping[str, Any], key: str, where: str = "", default: Any = _MISSING) -> Any:
    """A JSON object (``null`` allowed only where ``default`` is None)."""
    value = get_any(data, key, where, default)
    if value is None and default is None:
        return None
    if value is not default and not isinstance(value, dict):
        raise FieldError(_name(where, key), f"must be a JSON object, not {type(value).__name__}")
    return value


def frozen_map(values: Mapping[str, T]) -> Mapping[str, T]:
    """A read-only copy: the blocks are frozen, their maps too."""
    return MappingProxyType(dict(values))


def number_map(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, float]:
    block = get_block(data, key, where, default={})
    return frozen_map({k: get_float(block, k, _name(where, key)) for k in block})
