"""Reading a request from a client that may be slow, lying or gone.

dockerd's HTTP server (Go's net/http) reads a body of either framing, with
Content-Length or chunked transfer encoding, refuses a malformed one with 400,
and gives a client a deadline for its request headers (moby sets
``ReadHeaderTimeout`` against slowloris clients, which otherwise hold a
connection open forever by sending a header a byte at a time).  This module is
that part for ``launcher.http``: a socket reader with a total deadline (a
per-``recv`` socket timeout would let a byte every few seconds through) and a
body reader with a size limit that never trusts the client's numbers.
"""
from __future__ import annotations

import io
import re
import socket
import time

_LENGTH_RE = re.compile(rb"[0-9]{1,18}")
_CHUNK_SIZE_RE = re.compile(rb"[0-9a-fA-F]{1,15}")
_LINE_LIMIT = 4096  # a chunk-size or trailer line; longer is an attack, not a body


class BodyError(Exception):
    """A body that cannot be read: the HTTP status and Docker's message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class DeadlineReader(io.RawIOBase):
    """The raw reading side of a connection; while a deadline is armed every
    ``recv`` waits only for what is left of it, then raises ``TimeoutError``."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def arm(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def disarm(self) -> None:
        """No deadline; the socket blocks again (as the answer's writes should)."""
        self.deadline = None
        self.sock.settimeout(None)

    def readinto(self, buffer) -> int:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the client is too slow")
            self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


def content_length(headers) -> int:
    """The declared body size; a value that is not a plain decimal number is the
    client's error (a negative one would make the reader wait for EOF)."""
    values = headers.get_all("Content-Length") or []
    if not values:
        return 0
    raw = {v.strip().encode("latin-1", "replace") for v in values}
    if len(raw) != 1 or not _LENGTH_RE.fullmatch(next(iter(raw))):
        raise BodyError(400, f"invalid Content-Length: {', '.join(values)!r}")
    return int(next(iter(raw)))


def _read_exactly(rfile, size: int) -> bytes:
    data = rfile.read(size)
    if len(data) < size:
        raise BodyError(400, f"unexpected EOF: the body ended after {len(data)} of {size} bytes")
    return data


def _line(rfile) -> bytes:
    line = rfile.readline(_LINE_LIMIT)
    if not line.endswith(b"\n"):
        raise BodyError(400, "malformed chunked encoding: a line too long or cut short")
    return line.rstrip(b"\r\n")


def _read_chunked(rfile, limit: int) -> bytes:
    chunks, total = [], 0
    while True:
        size_text = _line(rfile).split(b";", 1)[0].strip()
        if not _CHUNK_SIZE_RE.fullmatch(size_text):
            raise BodyError(400, f"malformed chunked encoding: chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            while _line(rfile):  # trailer fields, up to the empty line
                pass
            return b"".join(chunks)
        total += size
        if total > limit:
            raise BodyError(413, f"request body of more than {limit} bytes is over the limit")
        chunks.append(_read_exactly(rfile, size))
        if _line(rfile):
            raise BodyError(400, "malformed chunked encoding: no line end after a chunk")


def read_body(headers, rfile, limit: int) -> bytes:
    """The whole body, by chunked encoding or Content-Length, at most ``limit``
    bytes; ``BodyError`` (400, 413, 501) for one that is malformed, too large,
    cut short or framed in a way docksim does not speak."""
    encoding = (headers.get("Transfer-Encoding") or "").strip().lower()
    if encoding:
        if encoding != "chunked":
            raise BodyError(501, f"unsupported transfer encoding: {encoding!r}")
        return _read_chunked(rfile, limit)
    length = content_length(headers)
    if length > limit:
        raise BodyError(413, f"request body of {length} bytes is over the limit of {limit}")
    return _read_exactly(rfile, length) if length else b""
