"""Container logs: stdout and stderr kept apart, with times, as Docker keeps them.

In Docker the shim hands the container's two output pipes to the daemon's log
driver (json-file by default), which stores every chunk with its stream and time;
`docker logs` and `attach` read them back as the multiplexed raw stream: frames
with an 8-byte header (stream 1 = stdout, 2 = stderr, 3 zero bytes, big-endian
length) before the payload.  In docksim the runtime's waiter process is shim and
log driver at once: it reads both pipes and appends one record per chunk to the
container's log file,

    stream (1 byte) | 3 zero bytes | length (4 bytes, big-endian) | time (8 bytes, ns since the epoch) | payload

so the order of writes across the two streams survives, as far as pipes keep it
(Docker's two pipes lose the same).  ``record`` is the writer's half (plain bytes,
safe in a forked child); ``LogReader`` and ``copy_output`` the daemon's.
"""
from __future__ import annotations

import datetime as dt
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

HEADER = struct.Struct(">B3xIQ")
STDOUT, STDERR = 1, 2
POLL_S = 0.01  # how often a follower looks for new output while the container runs


def record(stream: int, data: bytes, time_ns: int) -> bytes:
    """One record of the log file."""
    return HEADER.pack(stream, len(data), time_ns) + data


def frame(stream: int, data: bytes) -> bytes:
    """One frame of Docker's multiplexed stream (`application/vnd.docker.raw-stream`)."""
    return struct.pack(">B3xI", stream, len(data)) + data


def rfc3339_nano(time_ns: int) -> str:
    """`docker logs -t`'s time stamp: RFC 3339 with nanoseconds, UTC."""
    seconds, nanos = divmod(time_ns, 10**9)
    stamp = dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


@dataclass(frozen=True)
class Selection:
    """The query of `GET /containers/{id}/logs` (and attach)."""
    stdout: bool = True
    stderr: bool = True
    since_ns: int = 0
    until_ns: int = 0      # 0: no end
    timestamps: bool = False
    tail: int = -1         # last N lines only; -1: all

    def keep(self, stream: int, time_ns: int) -> bool:
        return ((self.stdout if stream == STDOUT else self.stderr)
                and time_ns >= self.since_ns and (not self.until_ns or time_ns < self.until_ns))


class LogReader:
    """Complete records from a log file that may still be growing."""

    def __init__(self, path: Path, offset: int = 0):
        self._file = open(path, "rb")
        self._file.seek(offset)
        self._pending = b""

    def close(self) -> None:
        self._file.close()

    def read(self) -> list[tuple[int, int, bytes]]:
        """(stream, time_ns, data) of every record completed since the last call."""
        self._pending += self._file.read()
        out, view, at = [], self._pending, 0
        while len(view) - at >= HEADER.size:
            stream, length, time_ns = HEADER.unpack_from(view, at)
            end = at + HEADER.size + length
            if end > len(view):
                break  # the writer is halfway through this record
            out.append((stream, time_ns, view[at + HEADER.size:end]))
            at = end
        self._pending = view[at:]
        return out


def end_offset(path: Path) -> int:
    """The offset just after the last complete record: where a live attach starts."""
    reader = LogReader(path)
    try:
        reader.read()
        return reader._file.tell() - len(reader._pending)
    finally:
        reader.close()


def _lines(records, selection: Selection):
    """Docker's log entries are lines (json-file splits at newlines): selected
    records as (stream, time_ns, line) with the line's newline kept."""
    for stream, time_ns, data in records:
        if selection.keep(stream, time_ns):
            for line in data.splitlines(keepends=True):
                yield stream, time_ns, line


def _encode(entries, selection: Selection, out) -> None:
    chunk = []
    for stream, time_ns, line in entries:
        if selection.timestamps:
            line = rfc3339_nano(time_ns).encode() + b" " + line
        chunk.append(frame(stream, line))
    if chunk:
        out.write(b"".join(chunk))


def copy_output(path: Path, out, selection: Selection, follow: bool,
                finished: threading.Event, offset: int = 0, alive=lambda: True) -> None:
    """Write the selected output to ``out`` (a daemon Stream) as Docker frames; with
    ``follow``, keep going until ``finished`` is set and everything is read, or the
    client goes away (a failed write, or ``alive()`` false)."""
    try:
        reader = LogReader(path, offset)
    except FileNotFoundError:
        return
    try:
        entries = list(_lines(reader.read(), selection))
        if selection.tail >= 0:
            entries = entries[-selection.tail:] if selection.tail else []
        _encode(entries, selection, out)
        while follow and not out.broken and alive():
            done = finished.is_set()  # read once more after the end: nothing is lost
            _encode(_lines(reader.read(), selection), selection, out)
            if done:
                return
            finished.wait(POLL_S)
    finally:
        reader.close()


def read_all(path: Path) -> dict[int, bytes]:
    """Everything a finished container wrote, per stream (for tests and tools)."""
    reader = LogReader(path)
    try:
        out = {STDOUT: b"", STDERR: b""}
        for stream, _, data in reader.read():
            out[stream] = out.get(stream, b"") + data
        return out
    finally:
        reader.close()
