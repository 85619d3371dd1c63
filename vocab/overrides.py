"""Overrides: change a scenario's values from the command line (``--set KEY=VALUE``).

An override edits the raw TOML document *before* it is validated, so every
check of the scenario loader applies to an overridden value exactly as to one
written in the file.  Nothing here knows which keys a scenario has: a key is
a path through the document, and the loader decides whether it is allowed.

Key syntax (dotted, like the loader's error messages):

* ``network.bandwidth_mbps``  a key of a table; a table the file leaves out is
  created (as a table, or -- when the loader wants an array there -- as an
  array of one table), so every key the loader allows works;
* ``step.clients``            for an array of tables (``[[step]]``): the key
  in every entry;
* ``step[1].clients``         in one entry (0-based).

Values are TOML literals: ``10``, ``2.5``, ``true``, ``"p2p"``, ``[1, 2]``.
A bare word that is not a TOML literal (``p2p``, ``lecture/hello:2``) is
taken as a string, so shells need no quoting for the common case.
"""
from __future__ import annotations

import functools
import re
import tomllib
from typing import Any, Callable, Mapping, TypeVar

from vocab.schema import ScenarioError

T = TypeVar("T")


class KeyPathError(ScenarioError):
    """A ``--set`` key that leads nowhere in the document (its own message is final)."""
_SEGMENT = re.compile(r"^(?P<name>[A-Za-z0-9_-]+)(?:\[(?P<index>[0-9]+)\])?$")
_INDEX = re.compile(r"\[[0-9]+\]")


def parse_key(key: str) -> list[tuple[str, int | None]]:
    """``step[1].clients`` -> [("step", 1), ("clients", None)]; ScenarioError if malformed."""
    segments = []
    for part in key.split("."):
        match = _SEGMENT.match(part)
        if not match:
            raise KeyPathError(f"--set {key}: not a key like network.bandwidth_mbps "
                               "or step[1].clients")
        index = match["index"]
        segments.append((match["name"], None if index is None else int(index)))
    return segments


def parse_value(text: str, key: str = "") -> Any:
    """One value as a TOML literal; a bare word that is none is a string."""
    text = text.strip()
    if not text:
        raise ScenarioError(f"--set {key}: empty value")
    try:
        doc = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        if text[0] in "\"'[{":  # meant as a literal, but malformed: say so
            raise ScenarioError(f"--set {key}: {text} is not a TOML value") from None
        return text
    if set(doc) != {"v"}:  # e.g. a newline smuggled another key in
        raise ScenarioError(f"--set {key}: {text!r} is not one TOML value")
    return doc["v"]


def split_values(text: str) -> list[str]:
    """Split ``V1,V2,...`` at commas outside quotes and brackets."""
    parts, current, depth, quote = [], [], 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def parse_assignment(text: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2`` -> (KEY, [v1, v2]); the key's syntax is checked, not its existence."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ScenarioError(f"--set {text}: expected KEY=VALUE, e.g. network.rtt_ms=20")
    parse_key(key)
    parsed = [parse_value(value, key) for value in split_values(values)]
    seen: list[Any] = []
    for value in parsed:
        if any(_same(value, other) for other in seen):
            raise ScenarioError(f"--set {key}: value {format_value(value)} is given twice")
        seen.append(value)
    return key, parsed


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def format_value(value: Any) -> str:
    """A value as a user would type it after ``--set KEY=``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if re.fullmatch(r"[A-Za-z0-9_./:-]+", value) else f'"{value}"'
    return repr(value) if not isinstance(value, (list, dict)) else str(value)


def _targets(doc: dict, key: str, created: set[str],
             as_array: frozenset[str]) -> list[tuple[dict, str]]:
    """The (table, key) pairs that ``key`` names in ``doc``.

    A missing container is created -- as an array of one table when indexed
    (``node[0].count``) or listed in ``as_array``, else as a table -- and its
    path is added to ``created``.
    """
    segments = parse_key(key)
    tables, walked = [doc], ""
    for name, index in segments[:-1]:
        walked = f"{walked}.{name}" if walked else name
        following = []
        for table in tables:
            if name not in table:
                table[name] = [{}] if index is not None or walked in as_array else {}
                created.add(walked)
            child = table[name]
            if isinstance(child, list) and child and all(isinstance(e, dict) for e in child):
                if index is None:
                    following.extend(child)  # step.clients: every entry
                elif index < len(child):
                    following.append(child[index])
                else:
                    raise KeyPathError(f"--set {key}: there are only {len(child)} "
                                       f"[[{walked}]] entries (indexes from 0)")
            elif isinstance(child, dict):
                if index is not None:
                    raise KeyPathError(f"--set {key}: {walked} is a table, "
                                       "not an array of tables")
                following.append(child)
            else:
                raise KeyPathError(f"--set {key}: {walked} is a value, not a table")
        tables = following
    name, index = segments[-1]
    if index is not None:
        raise KeyPathError(f"--set {key}: name a key inside the entry, "
                           f"e.g. {key}.KEY, not the whole entry")
    return [(table, name) for table in tables]


def _clone(value: Any) -> Any:
    """A deep copy of a TOML document: tables, arrays and immutable scalars only,
    so a few lines do what copy.deepcopy does, several times faster."""
    if isinstance(value, dict):
        return {key: _clone(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clone(item) for item in value]
    return value


def apply_overrides(doc: dict, overrides: Mapping[str, Any], *, created: set[str] | None = None,
                    as_array: frozenset[str] = frozenset()) -> dict:
    """A deep copy of ``doc`` with every override applied, in order.

    Containers the overrides had to create are added to ``created``; those in
    ``as_array`` are created as arrays of one table instead of tables.
    """
    doc = _clone(doc)
    created = set() if created is None else created
    for key, value in overrides.items():
        for table, name in _targets(doc, key, created, as_array):
            table[name] = _clone(value)
    return doc


def _error_path(message: str, source: str) -> str:
    """The key path of a loader message ``SOURCE: path: problem``."""
    rest = message[len(source) + 2:] if message.startswith(f"{source}: ") else message
    return rest.partition(": ")[0]


def _build(doc: dict, overrides: Mapping[str, Any], build: Callable[[dict], T], source: str) -> T:
    """Apply and validate; when a created table has the wrong shape for the
    loader (it wants ``[[node]]``, not ``[node]``), try arrays of one table."""
    created: set[str] = set()
    overridden = apply_overrides(doc, overrides, created=created)
    try:
        return build(overridden)
    except ScenarioError as exc:
        if _error_path(str(exc), source) not in created:
            raise
    return build(apply_overrides(doc, overrides, as_array=frozenset(created)))


def _blame(key_text: str, keys: list[str], message: str, source: str) -> ScenarioError:
    """Rephrase a loader error about the overridden document as a ``--set`` error."""
    rest = message[len(source) + 2:] if message.startswith(f"{source}: ") else message
    path, sep, problem = rest.partition(": ")
    # step[0].clients is what step.clients set: then the key already says where
    if sep and any(_INDEX.sub("", path) == _INDEX.sub("", key) for key in keys):
        rest = problem
    return ScenarioError(f"--set {key_text}: {rest}")


@functools.lru_cache(maxsize=8)
def _parsed(text: str) -> dict:
    """The parsed document, cached: a sweep loads one file once per point.
    Callers must not change it (``apply_overrides`` works on a deep copy)."""
    return tomllib.loads(text)


def load_overridden(text: str, source: str, overrides: Mapping[str, Any],
                    build: Callable[[dict], T], parse: Callable[[str, str], T]) -> T:
    """Validate scenario ``text`` with ``overrides`` applied.

    ``build(doc)`` is the loader's validation of a parsed document and
    ``parse(text, source)`` its whole parse; both raise ScenarioError.  An
    error caused by the file itself is reported as the loader words it; one
    caused by an override names ``--set KEY=VALUE`` (the first override that
    alone fails, else all of them together).
    """
    try:
        doc = _parsed(text)
    except tomllib.TOMLDecodeError:
        return parse(text, source)  # raises the loader's own "not valid TOML" line
    try:
        return _build(doc, overrides, build, source)
    except KeyPathError:
        raise
    except ScenarioError as exc:
        failure = exc
    parse(text, source)  # a problem of the file itself surfaces here, worded as usual
    for key, value in overrides.items():
        try:
            _build(doc, {key: value}, build, source)
        except ScenarioError as alone:
            raise _blame(f"{key}={format_value(value)}", [key], str(alone), source) from None
    every = " --set ".join(f"{key}={format_value(value)}" for key, value in overrides.items())
    raise _blame(every, list(overrides), str(failure), source) from None
