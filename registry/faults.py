"""Faults the registry commits on purpose, so clients' recovery can be seen and tested.

Real registries misbehave, and dockerd answers with retries, back-off and Range
resumes.  The server asks this module, for every GET of a blob body, whether
and how to misbehave (``Faults.for_blob``), then sends the body as planned
(``body_steps``).  Two sources of faults, which may be combined:

- random faults from a ``vocab.faults.RegistryFaults`` (a scenario's
  ``[registry] faults``, or ``--faults`` on the command line), drawn GET by GET
  from a seeded stream -- the one the model's registry draws from, so a
  scenario's measured faults follow its simulated ones:
  ``503`` answers 503 Service Unavailable (OCI code UNAVAILABLE);
  ``429`` answers 429 Too Many Requests with ``Retry-After``;
  ``stall`` sends part of the body, is silent for ``stall_s``, then sends the
  rest (a client that gave up meanwhile finds the connection closed);
  ``cut`` sends part of the body and closes the connection;
  ``flip`` inverts one byte of the body (the blob no longer matches its digest);
  ``drip`` sends the whole body at no more than ``drip_kbps``.
  Blobs that are JSON documents (image configs) are never faulted: dockerd
  reads the config once while resolving and does not retry it, and the model
  counts faults on layer downloads only.
- a scripted cut for tests: ``cut_after_bytes=N, times=K`` cuts the first K blob
  bodies that reach N bytes there; ``match`` limits it to paths containing it
  (a digest, say), so that concurrent downloads do not race for the fault.
  ``--fail-once-after N`` on the command line.

Manifests and other small JSON answers are never faulted.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Iterator

from registry.responses import RegistryError, Response
from vocab.faults import Fault, FaultDraws, RegistryFaults, fault_rng

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}
DRIP_SLICE_S = 0.02   # a dripping body goes out in slices this long (at least MIN_DRIP_BYTES)
MIN_DRIP_BYTES = 1024


@dataclass(frozen=True)
class Injection:
    """What goes wrong with one blob GET: a fault kind and, in the body, where."""

    kind: str            # one of vocab.faults.KINDS
    at_byte: int = 0     # stall / cut / flip: bytes of this body sent before it
    stall_s: float = 0.0
    drip_Bps: float = 0.0
    retry_after_s: float = 0.0

    def refusal(self) -> Response | None:
        """The answer that replaces the blob (503, 429), or None for a body fault."""
        if self.kind == "503":
            error = RegistryError(503, "UNAVAILABLE", "service unavailable",
                                  {"fault": "injected by docksim"}, dict(API_VERSION_HEADER))
        elif self.kind == "429":
            error = RegistryError(429, "TOOMANYREQUESTS", "too many requests",
                                  {"fault": "injected by docksim"},
                                  {**API_VERSION_HEADER, "Retry-After": _seconds(self.retry_after_s)})
        else:
            return None
        return error.response()

    def describe(self) -> str:
        """For the server's log line."""
        if self.kind == "stall":
            return f"stall {self.stall_s:g} s at byte {self.at_byte}"
        if self.kind in ("cut", "flip"):
            return f"{self.kind} at byte {self.at_byte}"
        if self.kind == "drip":
            return f"drip at {self.drip_Bps * 8 / 1000:g} kbit/s"
        if self.kind == "429":
            return f"429, Retry-After {_seconds(self.retry_after_s)}"
        return self.kind


def _seconds(value: float) -> str:
    """Retry-After in seconds: whole seconds as real registries send them; a
    fraction (docksim's extension, for quick tests) when one was asked for."""
    return str(int(value)) if value == int(value) else f"{value:g}"


class Faults:
    """The registry's faults: random ones from `spec` (drawn from the model's
    stream of `seed` and `replication`) and/or a scripted cut.  Thread-safe:
    every request thread asks it."""

    def __init__(self, cut_after_bytes: int | None = None, times: int = 1, match: str = "", *,
                 spec: RegistryFaults | None = None, seed: int = 0, replication: int = 0):
        if cut_after_bytes is not None and cut_after_bytes < 0:
            raise ValueError("cut_after_bytes must be at least 0")
        if times < 0:
            raise ValueError("times must be at least 0")
        self.cut_after_bytes = cut_after_bytes
        self.match = match
        self._left = times if cut_after_bytes is not None else 0
        self._lock = threading.Lock()
        self.cuts = 0  # how many bodies the scripted cut cut so far
        self.spec = spec or RegistryFaults()
        self._draws = FaultDraws(self.spec, fault_rng(seed, replication))

    @property
    def counts(self) -> dict[str, int]:
        """Random faults injected so far, by kind."""
        with self._lock:
            return dict(self._draws.counts)

    def cut_point(self, body_bytes: int, path: str = "") -> int | None:
        """The scripted cut for a blob body of `body_bytes` asked for by `path`:
        where to cut it, or None.  Each cut that will happen uses up one of `times`."""
        with self._lock:
            if not self._left or self.cut_after_bytes is None or body_bytes <= self.cut_after_bytes:
                return None
            if self.match not in path:
                return None
            self._left -= 1
            self.cuts += 1
            return self.cut_after_bytes

    def for_blob(self, path: str, response: Response) -> Injection | None:
        """What goes wrong with this GET of a blob (a 200 or 206 from a file), or None."""
        cut = self.cut_point(response.length, path)
        if cut is not None:
            return Injection("cut", cut)
        if not self.spec.any or _is_json(response):
            return None
        with self._lock:
            fault = self._draws.next()
        return None if fault is None else self._injection(fault, response.length)

    def _injection(self, fault: Fault, body_bytes: int) -> Injection:
        spec = self.spec
        at_byte = min(int(fault.at * body_bytes), max(0, body_bytes - 1))
        return Injection(fault.kind, at_byte, stall_s=spec.stall_s, drip_Bps=spec.drip_Bps,
                         retry_after_s=spec.retry_after_s)


def _is_json(response: Response) -> bool:
    """An image config (or any JSON document stored as a blob): its first byte is '{'.
    Layers start with gzip's or zstd's magic number, or a tar header's file name."""
    try:
        with open(response.file, "rb") as blob:
            return os.pread(blob.fileno(), 1, 0) == b"{"
    except OSError:
        return False


def body_steps(length: int, chunk_bytes: int, injection: Injection | None) -> Iterator[tuple]:
    """How to send a body of `length` bytes in slices of at most `chunk_bytes`:
    ("send", start, n) a slice; ("pause", s) silence; ("pace", t) wait until t s
    after the body began; ("flip", pos) the byte at pos, inverted; ("cut",) close."""
    kind = injection.kind if injection is not None else None
    end = min(injection.at_byte, length) if kind == "cut" else length
    special = injection.at_byte if kind in ("stall", "flip") and length else None
    if kind == "drip":
        chunk_bytes = max(MIN_DRIP_BYTES, min(chunk_bytes, int(injection.drip_Bps * DRIP_SLICE_S)))
    pos = 0
    while pos < end:
        if special == pos:
            special = None
            if kind == "stall":
                yield ("pause", injection.stall_s)
                continue
            yield ("flip", pos)
            pos += 1
            continue
        stop = min(end, pos + chunk_bytes)
        if special is not None and pos < special:
            stop = min(stop, special)
        if kind == "drip":  # a slice leaves once the drip rate allows all of it
            yield ("pace", stop / injection.drip_Bps)
        yield ("send", pos, stop - pos)
        pos = stop
    if kind == "cut":
        yield ("cut",)
