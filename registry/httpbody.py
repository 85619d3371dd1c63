"""A request body as a stream: `Content-Length` bytes, or HTTP/1.1 chunked coding.

Pushes send blobs in request bodies.  skopeo and containerd send a
`Content-Length`; dockerd streams each layer as one PATCH with
`Transfer-Encoding: chunked` (RFC 9112 section 7.1) because it compresses while
it sends.  The API reads either through `read(n)` without holding a blob in
memory; the server closes the connection when a handler left part of a body
unread, since the next request would start in the middle of it.
"""
from __future__ import annotations

from typing import BinaryIO

MAX_CHUNK_LINE = 4096


class BodyError(Exception):
    """The body is malformed or the client stopped sending it."""


class RequestBody:
    """Reads one request's body from the connection's `rfile`."""

    def __init__(self, rfile: BinaryIO, length: int | None, chunked: bool):
        self._rfile = rfile
        self._chunked = chunked
        self._left = 0 if chunked else (length or 0)   # bytes left in the body / current chunk
        self._ended = not chunked and not length
        self._need_crlf = False   # chunked: a chunk's data was read, its CRLF not yet
        self.received = 0

    @classmethod
    def from_headers(cls, rfile: BinaryIO, headers) -> "RequestBody":
        coding = headers.get("Transfer-Encoding", "").lower()
        if coding:
            if coding.replace(" ", "") != "chunked":
                raise BodyError(f"unsupported Transfer-Encoding {coding!r}")
            return cls(rfile, None, True)
        text = headers.get("Content-Length", "0").strip() or "0"
        if not text.isdigit():
            raise BodyError(f"bad Content-Length {text!r}")
        return cls(rfile, int(text), False)

    @property
    def declared_length(self) -> int | None:
        """The Content-Length, or None for a chunked body."""
        return None if self._chunked else self.received + self._left

    @property
    def finished(self) -> bool:
        return self._ended

    def _next_chunk(self) -> None:
        line = self._rfile.readline(MAX_CHUNK_LINE)
        if not line.endswith(b"\n"):
            raise BodyError("chunked body: bad or missing chunk size line")
        try:
            self._left = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BodyError("chunked body: bad chunk size") from None
        if self._left == 0:
            while self._rfile.readline(MAX_CHUNK_LINE) not in (b"\r\n", b"\n", b""):
                pass  # trailer fields: ignored
            self._ended = True

    def read(self, n: int) -> bytes:
        """Up to `n` bytes of the body; b"" at its end."""
        if self._ended:
            return b""
        if self._left == 0:  # chunked: the next chunk (a plain body has ended by now)
            if self._need_crlf and self._rfile.read(2) != b"\r\n":
                raise BodyError("chunked body: chunk data not followed by CRLF")
            self._next_chunk()
            if self._ended:
                return b""
        data = self._rfile.read(min(n, self._left))
        if not data:
            raise BodyError(f"the client stopped sending after {self.received} bytes")
        self._left -= len(data)
        self.received += len(data)
        self._need_crlf = self._chunked
        if not self._chunked and self._left == 0:
            self._ended = True
        return data

    def read_all(self, limit: int) -> bytes:
        """The whole body, refusing one longer than `limit` bytes (BodyError)."""
        parts, size = [], 0
        while chunk := self.read(min(1 << 20, limit + 1 - size)):
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                raise BodyError(f"body larger than {limit} bytes")
        return b"".join(parts)
