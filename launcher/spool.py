"""A blob on its way in: written by the download, read by the unpacker at the same time.

dockerd downloads a layer into a temp file and extracts it once the file is
complete; docksim's pipeline lets the unpacker follow the download instead, like
`tail -f`: it reads whatever has arrived and waits for more.  The file is kept
because the verified blob stays in the content store (containerd keeps layer
blobs too), and because in Docker's serial order a layer's bytes often arrive
before the layers below it are registered: they wait in the page cache, not in
the daemon's memory.

The download ends in `finish()` (every byte there *and* the digest checked) or
`fail(error)`.  A reader that reaches the end of a finished spool gets b"";
a reader of a failed spool gets the download's error, so nothing is registered
from a blob whose digest did not match.  A download that missed its digest and
will be fetched again calls `restart()`: the file is emptied and the reader's
next call raises `SpoolRestarted`; it throws away what it made of the bytes,
calls `rewind()` and reads the new bytes from the start.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path


class SpoolRestarted(Exception):
    """The bytes read so far were discarded: start again with `rewind()`."""


class Spool:
    """One blob file with one writer and one reader, which may overlap in time."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        self._cond = threading.Condition()
        self._written = 0
        self._read_pos = 0
        self._done = False
        self._error: BaseException | None = None
        self._generation = 0         # bumped by restart()
        self._reader_generation = 0  # the generation the reader is reading

    # -- the download's side ---------------------------------------------------

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        offset = self._written  # only this thread moves it
        while view:
            n = os.pwrite(self._fd, view, offset)
            view, offset = view[n:], offset + n
        with self._cond:
            self._written = offset
            self._cond.notify_all()

    def restart(self) -> None:
        """The bytes so far are wrong: empty the file for a download from scratch;
        the reader's next call raises SpoolRestarted."""
        with self._cond:
            os.ftruncate(self._fd, 0)
            self._written = 0
            self._generation += 1
            self._cond.notify_all()

    def finish(self) -> None:
        """Every byte is here and verified."""
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        """The blob will not complete: wake the reader with `error`."""
        with self._cond:
            if not self._done:
                self._error = error
            self._cond.notify_all()

    @property
    def written(self) -> int:
        return self._written

    # -- the unpacker's side ---------------------------------------------------

    def read(self, n: int) -> bytes:
        """Up to `n` bytes from where the reader stands; waits for the writer;
        b"" once a finished blob is read to its end."""
        with self._cond:
            while (self._written == self._read_pos and not self._done and self._error is None
                   and self._generation == self._reader_generation):
                self._cond.wait()
            self._check_generation()
            if self._error is not None:
                raise self._error
            available = self._written - self._read_pos
        if not available:
            return b""
        data = os.pread(self._fd, min(n, available), self._read_pos)
        with self._cond:
            self._check_generation()  # the file may have been emptied during the pread
        self._read_pos += len(data)
        return data

    def rewind(self) -> None:
        """After SpoolRestarted: read the new download from its first byte."""
        with self._cond:
            self._reader_generation = self._generation
            self._read_pos = 0

    def _check_generation(self) -> None:
        if self._generation != self._reader_generation:
            raise SpoolRestarted()

    def wait_done(self) -> None:
        """Return once the blob is complete and verified; raise the download's
        error, or SpoolRestarted when the bytes the reader read were discarded."""
        with self._cond:
            while (not self._done and self._error is None
                   and self._generation == self._reader_generation):
                self._cond.wait()
            self._check_generation()
            if self._error is not None:
                raise self._error

    def close(self) -> None:
        os.close(self._fd)
