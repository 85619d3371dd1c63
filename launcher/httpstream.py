"""A response body written piece by piece, as dockerd streams pull progress,
logs and attached output.

Go's net/http sends a body of unknown length with chunked transfer encoding,
and the Docker SDK reads a body as a stream of JSON messages only when it is
chunked; an attached (hijacked) connection carries raw bytes instead.
"""
from __future__ import annotations

import json
import threading


class Stream:
    """A body written piece by piece (chunked, or raw on a hijacked connection);
    a client that went away stops the writes."""

    def __init__(self, wfile, chunked: bool = True):
        self.wfile = wfile
        self.chunked = chunked
        self.broken = False
        self._lock = threading.Lock()  # pull progress arrives from download threads too
        self.closed = False

    def _send(self, raw: bytes) -> None:
        with self._lock:
            if self.broken or self.closed:
                return
            try:
                self.wfile.write(raw)
                self.wfile.flush()
            except OSError:
                self.broken = True

    def write(self, data: bytes) -> None:
        if data:
            self._send(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)

    def close(self) -> None:
        """The last (empty) chunk: the body is complete and the connection reusable."""
        if self.chunked:
            self._send(b"0\r\n\r\n")
        self.closed = True

    def json(self, message: dict) -> None:
        self.write(json.dumps(message).encode() + b"\r\n")
