"""A layer blob's bytes in, the uncompressed tar stream out, hashed as it flows.

This is the middle of the pull pipeline: containerd's `compression.DecompressStream`
plus the diff_id digester of its `Apply`.  The input arrives piece by piece (from
the network spool); each `read_chunk` returns the next piece of the tar stream,
at most `CHUNK_BYTES` long whatever the compression ratio, so a layer that
inflates a thousandfold cannot fill the memory.  The sha256 of everything handed
out is the layer's diff_id, checked by the store after the tar's end.

gzip: one or more members (RFC 1952), CRC and length checked by zlib.
zstd: one or more frames (RFC 8878), content checksums checked by libzstd.

`max_bytes` caps the whole uncompressed stream: a gzip bomb (a few hundred kB
that inflate to gigabytes) stops with `TooLarge` at the cap, before the chunk
that would cross it is handed out.  dockerd has no such cap; the daemon sets
one (``--max-layer-mb``) because its layers come from the network.
"""
from __future__ import annotations

import hashlib
import zlib
from typing import Callable

import zstandard

from launcher.manifest import GZIP_MAGIC
from launcher.zstdframes import FrameTracker

CHUNK_BYTES = 1 << 20       # at most this much uncompressed output per chunk
INPUT_BYTES = 256 * 1024    # compressed input per read: small tails to carry over

Read = Callable[[int], bytes]  # read(n): up to n bytes, b"" at the end


class BrokenData(Exception):
    """The compressed stream is corrupt or ends early; the text says how."""


class TooLarge(Exception):
    """The uncompressed stream grew past its cap; the text gives the cap."""


class _Plain:
    def __init__(self, read: Read):
        self._read = read

    def next(self) -> bytes:
        return self._read(CHUNK_BYTES)


class _Gzip:
    """Concatenated gzip members, inflated with bounded output per call."""

    def __init__(self, read: Read):
        self._read = read
        self._inflater = zlib.decompressobj(wbits=31)
        self._pending = b""     # input not yet given to the inflater
        self._in_member = False
        self._ended = False

    def next(self) -> bytes:
        while not self._ended:
            data = self._pending or self._read(INPUT_BYTES)
            self._pending = b""
            if not data:
                self._ended = True
                if self._in_member:
                    raise BrokenData("gzip stream ends in the middle of a member (truncated)")
                return b""
            if not self._in_member:
                if not data.startswith(GZIP_MAGIC[:len(data)]):
                    raise BrokenData("data after the last gzip member is not gzip")
                self._in_member = True
            try:
                out = self._inflater.decompress(data, CHUNK_BYTES)
            except zlib.error as exc:
                raise BrokenData(f"gzip: {exc}") from None
            self._pending = self._inflater.unconsumed_tail
            if self._inflater.eof:  # a member ended: what follows starts the next one
                self._pending = self._inflater.unused_data + self._pending
                self._inflater = zlib.decompressobj(wbits=31)
                self._in_member = False
            if out:
                return out
        return b""


class _Zstd:
    """zstd frames, one after another, through libzstd's bounded reader; a stream
    that ends inside a frame is refused (libzstd's reader alone would not notice)."""

    def __init__(self, read: Read):
        self._frames = FrameTracker()
        source = _ReadAdapter(read, self._frames)
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            source, read_size=INPUT_BYTES, read_across_frames=True)

    def next(self) -> bytes:
        try:
            out = self._reader.read(CHUNK_BYTES)
        except zstandard.ZstdError as exc:
            raise BrokenData(f"zstd: {exc}") from None
        if not out and self._frames.truncated:
            raise BrokenData("zstd stream ends in the middle of a frame (truncated)")
        return out


class _ReadAdapter:
    """The file-like face libzstd's reader wants, over a read function; every byte
    also goes past the frame tracker."""

    def __init__(self, read: Read, frames: FrameTracker):
        self._read = read
        self._frames = frames

    def read(self, n: int) -> bytes:
        data = self._read(n)
        self._frames.feed(data)
        return data


_KINDS = {"": _Plain, "gzip": _Gzip, "zstd": _Zstd}


class TarStream:
    """The uncompressed tar stream of one layer blob, with its running sha256."""

    def __init__(self, read: Read, compression: str, max_bytes: int | None = None):
        if compression not in _KINDS:
            raise ValueError(f"unsupported layer compression {compression!r}")
        self._source = _KINDS[compression](read)
        self.sha256 = hashlib.sha256()
        self.bytes_out = 0
        self.max_bytes = max_bytes

    def read_chunk(self) -> bytes:
        """The next piece of the tar stream (at most CHUNK_BYTES), b"" at its end.
        Raises `TooLarge` instead of a piece that would pass `max_bytes`."""
        chunk = self._source.next()
        if self.max_bytes is not None and self.bytes_out + len(chunk) > self.max_bytes:
            raise TooLarge(f"uncompressed size passes the limit of {self.max_bytes} bytes "
                           f"(a gzip bomb, or a layer bigger than the daemon allows)")
        if chunk:
            self.sha256.update(chunk)
            self.bytes_out += len(chunk)
        return chunk

    def drain(self) -> None:
        """Read to the end: the diff_id covers the zero blocks after the archive."""
        while self.read_chunk():
            pass

    @property
    def diff_id(self) -> str:
        return "sha256:" + self.sha256.hexdigest()
