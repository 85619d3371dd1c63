"""The daemon's own account of each phase, so that measurements see inside it.

dockerd reports progress but no timings; docksim's daemon records, for each
client request (tagged by the `X-Docksim-Request` header), when each phase began
and ended on the machine-wide monotonic clock, which client and daemon share
because they run on the same host.  The measuring client collects them with
`GET /docksim/phases?request=TAG`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PhaseEvent:
    request: str
    phase: str
    layer: str
    start: float  # time.monotonic()
    end: float
    bytes: int | None = None


class PhaseLog:
    """Thread-safe store of phase events by request tag; untagged ones are dropped."""

    def __init__(self):
        self._events: dict[str, list[PhaseEvent]] = {}
        self._lock = threading.Lock()

    def record(self, request: str, phase: str, start: float, end: float | None = None,
               layer: str = "", nbytes: int | None = None) -> None:
        if not request:
            return
        event = PhaseEvent(request, phase, layer, start, time.monotonic() if end is None else end, nbytes)
        with self._lock:
            self._events.setdefault(request, []).append(event)

    def take(self, request: str) -> list[dict]:
        """Hand over (and forget) the events of one request."""
        with self._lock:
            events = self._events.pop(request, [])
        return [asdict(e) for e in events]
