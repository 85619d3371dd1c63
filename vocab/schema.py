"""A small declarative checker for TOML tables.

Scenario files are read by people who make typing mistakes in front of an
audience, so every problem must come back as one line that names the file and
the key path (``step[1].command``).  The checker below knows only tables of
scalar fields; the scenario module composes it for nested tables and arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

REQUIRED = object()


class ScenarioError(ValueError):
    """A user-facing, one-line problem with a scenario file or an option."""


@dataclass(frozen=True)
class Field:
    """One key of a table: its type, default and an extra check.

    ``check`` returns a problem sentence, or None when the value is fine.
    ``kind`` float accepts TOML integers too; bool is never taken for a number.
    """

    kind: type
    default: Any = REQUIRED
    check: Callable[[Any], str | None] | None = None


def _type_name(kind: type) -> str:
    return {float: "a number", int: "an integer", str: "a string",
            bool: "true or false", list: "an array", dict: "a table"}[kind]


def _coerce(value: Any, kind: type) -> Any:
    """Return value as kind, or raise TypeError when TOML gave another type."""
    if isinstance(value, bool) and kind is not bool:
        raise TypeError
    if kind is float and isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise TypeError
        return float(value)
    if not isinstance(value, kind):
        raise TypeError
    return value


def key_path(parent: str, key: str | int) -> str:
    """Join a key path the way error messages print it: a.b, a[2].c."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def check_table(raw: Any, schema: Mapping[str, Field], where: str,
                fail: Callable[[str, str], Exception]) -> dict[str, Any]:
    """Validate one table against schema; return its values with defaults.

    ``fail(path, problem)`` builds the exception to raise; keys that belong to a
    nested structure are listed in the schema with kind list or dict and are
    returned unchecked beyond their type.
    """
    if not isinstance(raw, dict):
        raise fail(where, "must be a table")
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        raise fail(key_path(where, unknown[0]), "unknown key "
                   f"(expected one of: {', '.join(sorted(schema))})")
    out: dict[str, Any] = {}
    for key, field in schema.items():
        path = key_path(where, key)
        if key not in raw:
            if field.default is REQUIRED:
                raise fail(path, "missing required key")
            out[key] = field.default
            continue
        try:
            value = _coerce(raw[key], field.kind)
        except TypeError:
            raise fail(path, f"must be {_type_name(field.kind)}, "
                       f"not {raw[key]!r}") from None
        if field.check is not None:
            problem = field.check(value)
            if problem:
                raise fail(path, problem)
        out[key] = value
    return out


def positive(value: float) -> str | None:
    return None if value > 0 else f"must be greater than 0, not {value}"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else f"must not be negative, not {value}"


def at_least_one(value: int) -> str | None:
    return None if value >= 1 else f"must be at least 1, not {value}"


def one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value in choices:
            return None
        return f"unknown value {value!r} (expected {', '.join(choices)})"
    return check
