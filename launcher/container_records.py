"""A container's record on disk: dockerd's ``containers/<id>/config.v2.json``.

dockerd writes each container's configuration and state to disk whenever the
state changes (created, running with its pid, exited with its code), so that a
daemon that restarts, cleanly or after a crash, knows every container again.
docksim does the same, through the store's atomic writes: a record is the old
one or the new one, never half of either.  ``launcher.recovery`` reads them back
at start-up.

The record holds what ``Container`` holds, except what only lives in the daemon's
memory (the process handle, the cgroup object, the events).  The host pid of
the shim-like waiter is kept for the log; recovery finds a survivor by the
container's open log file instead, which a reused pid cannot fake.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from typing import TYPE_CHECKING

from launcher.cgroups import Limits
from launcher.store import CONTAINER_RECORD as RECORD_NAME

if TYPE_CHECKING:
    from launcher.containers import Container
STATES = ("created", "running", "exited")
_FIELDS = ("id", "name", "image", "image_name", "argv", "env", "cwd", "user", "hostname",
           "host_config", "capabilities", "stop_signal", "stop_timeout", "labels", "created_s",
           "status", "exit_code", "oom_killed", "error", "started_s", "finished_s")


class RecordError(ValueError):
    """A record that cannot be read back; the message names the file and why."""


def to_record(container: "Container") -> dict:
    """The JSON-able record of a container's configuration and state."""
    record = {name: getattr(container, name) for name in _FIELDS}
    record["limits"] = dataclasses.asdict(container.limits)
    process = container.process
    record["pid"] = process.pid if process is not None and container.status == "running" else 0
    return record


def from_record(record: dict, directory: Path) -> "Container":
    """A ``Container`` (without a process) from its record; ``RecordError`` if the
    record lacks a field or names a state docksim does not know."""
    from launcher.containers import Container  # containers imports this module
    missing = [name for name in _FIELDS if name not in record]
    if missing:
        raise RecordError(f"{directory / RECORD_NAME}: lacks {', '.join(missing)}")
    if record["status"] not in STATES:
        raise RecordError(f"{directory / RECORD_NAME}: unknown status {record['status']!r}")
    try:
        limits = Limits(**record.get("limits", {}))
    except TypeError as exc:
        raise RecordError(f"{directory / RECORD_NAME}: limits: {exc}") from None
    container = Container(limits=limits, dir=Path(directory),
                          **{name: record[name] for name in _FIELDS})
    if container.status == "exited":
        container.exited.set()
    return container


def read_record(directory: Path) -> "Container":
    """The container recorded in ``directory``; ``RecordError`` if there is no
    readable record (a `create` that a crash interrupted) or it is malformed."""
    path = Path(directory) / RECORD_NAME
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"{path}: missing (its create never finished)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: unreadable: {exc}") from None
    if not isinstance(record, dict):
        raise RecordError(f"{path}: not a JSON object")
    return from_record(record, Path(directory))
