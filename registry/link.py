"""The network link between the registry and the node, emulated inside the registry.

This kernel has tbf but no netem, so instead of shaping packets this first
version shapes the responses.  The model is deliberately the one the SimPy
model assumes, so that any difference between prediction and measurement comes
from the clients and the daemon, not from a link nobody can describe:

* **Latency.**  Every response (every request: `/v2/`, HEAD, GET, errors) waits
  `rtt_ms` before its status line is sent: one round trip per request, as if
  the request took half of it to arrive and the answer the other half to start
  arriving.  Connection set-up costs nothing extra (clients keep connections
  alive, as Docker does).
* **Bandwidth.**  The body bytes of all responses under way share one link of
  `bandwidth_mbps` (10**6 bit/s) by processor sharing: N bodies in flight each
  get 1/N of the rate, one body gets all of it.  Headers are free.

So a request for B body bytes while the link carries N bodies takes
``rtt + B / (rate / N)``, N varying as bodies start and end.

How: one virtual clock `next_free` says when the link is next idle.  A sender
reserves a slot for its next chunk, ``start = max(now, next_free)``,
``next_free = start + chunk / rate``, sleeps until the slot ends and only then
hands the chunk to the socket.  Concurrent senders therefore take turns chunk by
chunk.  Chunks last about 5 ms (at least 16 KiB, at most 1 MiB), fine enough
that N senders end within one chunk time of each other.  A sender's own
scheduling lag of up to 5 ms between its chunks is not counted as idle link
time, so sleep overshoot does not add up over thousands of chunks.
"""
from __future__ import annotations

import threading
import time

SLOT_S = 0.005
MIN_CHUNK_BYTES = 16 * 1024
MAX_CHUNK_BYTES = 1024 * 1024
UNLIMITED_CHUNK_BYTES = 8 * 1024 * 1024
MAX_LAG_S = 0.005


class LinkClosed(Exception):
    """The server is stopping: abandon the response."""


class Link:
    """One shared link: `bandwidth_mbps` None means no limit; `rtt_ms` per request."""

    def __init__(self, bandwidth_mbps: float | None = None, rtt_ms: float = 0.0):
        if bandwidth_mbps is not None and not bandwidth_mbps > 0:
            raise ValueError(f"bandwidth_mbps must be positive or None, not {bandwidth_mbps!r}")
        if not rtt_ms >= 0:
            raise ValueError(f"rtt_ms must be at least 0, not {rtt_ms!r}")
        self.bandwidth_mbps = bandwidth_mbps
        self.rtt_ms = rtt_ms
        self._bytes_per_s = bandwidth_mbps * 1e6 / 8 if bandwidth_mbps else None
        self._lock = threading.Lock()
        self._next_free_s = 0.0
        self._closed = threading.Event()

    @property
    def unlimited(self) -> bool:
        return self._bytes_per_s is None

    @property
    def chunk_bytes(self) -> int:
        if self._bytes_per_s is None:
            return UNLIMITED_CHUNK_BYTES
        return int(min(MAX_CHUNK_BYTES, max(MIN_CHUNK_BYTES, self._bytes_per_s * SLOT_S)))

    def close(self) -> None:
        """Wake every waiting sender; they raise LinkClosed."""
        self._closed.set()

    def sleep_until(self, deadline_s: float) -> None:
        delay_s = deadline_s - time.monotonic()
        if (delay_s > 0 and self._closed.wait(delay_s)) or self._closed.is_set():
            raise LinkClosed()

    def round_trip(self) -> None:
        """Wait one round trip before a response starts."""
        self.sleep_until(time.monotonic() + self.rtt_ms / 1000.0)

    def reserve(self, n_bytes: int, earliest_s: float) -> float:
        """Book the link for `n_bytes` from `earliest_s` or when it is next free; return the end."""
        with self._lock:
            start_s = max(self._next_free_s, earliest_s)
            self._next_free_s = start_s + n_bytes / self._bytes_per_s
            return self._next_free_s

    def sender(self) -> "Sender":
        """Pacing state for one response body."""
        return Sender(self)


class Sender:
    """Reserves link time for one body, chunk by chunk."""

    def __init__(self, link: Link):
        self._link = link
        self._previous_end_s: float | None = None

    def wait_for_slot(self, n_bytes: int) -> None:
        """Return when `n_bytes` have had their turn on the link."""
        link = self._link
        if link.unlimited:
            link.sleep_until(0.0)  # only to notice a stopping server
            return
        now_s = time.monotonic()
        earliest_s = now_s if self._previous_end_s is None else max(self._previous_end_s, now_s - MAX_LAG_S)
        self._previous_end_s = link.reserve(n_bytes, earliest_s)
        link.sleep_until(self._previous_end_s)
