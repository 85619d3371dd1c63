"""`docker events`: what happened to images and containers, as a live stream.

dockerd publishes one message per action (image: pull, push, tag, untag, delete;
container: create, start, kill, oom, die, stop, destroy) to every `GET /events`
subscriber, and keeps the most recent ones in memory (256 in dockerd's
`events.Events`) so that `--since` can replay them.  The message shape is the one
of API 1.41: ``Type``, ``Action``, ``Actor{ID, Attributes}``, ``scope``, ``time``
and ``timeNano``, plus the older ``status``/``id``/``from`` fields the 20.10
client still prints.  ``--until`` ends the stream at that time; filters
(``type``, ``event``, ``container``, ``image``) select messages.
"""
from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque

KEEP = 256  # dockerd's events buffer


def event(kind: str, action: str, actor_id: str, attributes: dict[str, str]) -> dict:
    now = time.time_ns()
    message = {"Type": kind, "Action": action,
               "Actor": {"ID": actor_id, "Attributes": dict(attributes)},
               "scope": "local", "time": now // 10**9, "timeNano": now}
    # the fields of API < 1.22, still sent (and printed by older clients)
    message.update({"status": action, "id": actor_id})
    if kind == "container" and "image" in attributes:
        message["from"] = attributes["image"]
    return message


def parse_time(text: str) -> int:
    """`since`/`until` as the clients send them: unix seconds, optionally with a
    fraction ("1700000000.123456789"); returns nanoseconds, 0 for none."""
    if not text:
        return 0
    seconds, _, fraction = text.partition(".")
    try:
        return int(seconds) * 10**9 + int((fraction + "000000000")[:9])
    except ValueError:
        raise ValueError(f"invalid timestamp {text!r}") from None


def parse_filters(text: str) -> dict[str, set[str]]:
    """`filters` JSON: {"type": ["container"]} (SDK) or {"type": {"container": true}} (CLI)."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
        return {key: set(values) if isinstance(values, list)
                else {v for v, on in values.items() if on} for key, values in raw.items()}
    except (ValueError, AttributeError, TypeError):
        raise ValueError(f"invalid filters: {text}") from None


def matches(message: dict, filters: dict[str, set[str]]) -> bool:
    attributes = message["Actor"]["Attributes"]
    for key, wanted in filters.items():
        if key == "type":
            ok = message["Type"] in wanted
        elif key in ("event", "action"):
            ok = message["Action"] in wanted
        elif key == "container":
            ok = message["Type"] == "container" and (
                attributes.get("name") in wanted
                or any(message["Actor"]["ID"].startswith(w) for w in wanted))
        elif key == "image":
            ok = (attributes.get("image") in wanted or attributes.get("name") in wanted
                  or message["Actor"]["ID"] in wanted)
        else:
            ok = True  # filters docksim does not know (label, network, ...) select all
        if not ok:
            return False
    return True


class EventLog:
    """The daemon's event hub: publish from any thread, subscribe per request."""

    def __init__(self):
        self._recent: deque[dict] = deque(maxlen=KEEP)
        self._subscribers: list[queue.SimpleQueue] = []
        self._lock = threading.Lock()

    def publish(self, kind: str, action: str, actor_id: str, **attributes: str) -> None:
        message = event(kind, action, actor_id, attributes)
        with self._lock:
            self._recent.append(message)
            for subscriber in self._subscribers:
                subscriber.put(message)

    def follow(self, since_ns: int, until_ns: int, alive) -> "iter[dict]":
        """The kept messages from ``since_ns`` on, then live ones, until ``until_ns``
        (0: for ever) or until ``alive()`` turns false (the client went away).
        Without ``since_ns`` only live messages come, as with dockerd."""
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        with self._lock:
            past = [m for m in self._recent if since_ns and m["timeNano"] >= since_ns]
            self._subscribers.append(inbox)
        try:
            for message in past:
                if until_ns and message["timeNano"] > until_ns:
                    return
                yield message
            while alive():
                wait_s = 0.5
                if until_ns:
                    wait_s = min(wait_s, (until_ns - time.time_ns()) / 1e9)
                    if wait_s <= 0:
                        return
                try:
                    message = inbox.get(timeout=wait_s)
                except queue.Empty:
                    continue
                if until_ns and message["timeNano"] > until_ns:
                    return
                yield message
        finally:
            with self._lock:
                self._subscribers.remove(inbox)
