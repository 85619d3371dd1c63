"""A gzip member written piece by piece, each piece at its own deflate level.

Docker layers are gzip streams (RFC 1952) around one deflate stream (RFC 1951).
A deflate stream is a sequence of blocks, and nothing forces one compressor to
make all of them: after a sync flush the output is byte-aligned and carries no
pending state, so a fresh compressor (or hand-made "stored" blocks) can carry
on, and any gunzip reads the result as one ordinary stream.  pigz uses the same
property to compress in parallel.

The layer generator uses it to be fast and exact: random bytes go into stored
blocks (copied, not searched for matches: 6x faster than level 1, and exactly
what deflate itself emits for random data), runs of zeros are compressed once
per length and reused, and the compressed size of every piece is known before
it is written.  The header carries mtime 0, so equal input gives equal bytes.

While writing it computes what a registry and a daemon need: the sha256 and
length of the uncompressed stream (the layer's diff_id) and of the gzip blob
(its digest).
"""
from __future__ import annotations

import hashlib
import struct
import zlib
from typing import BinaryIO

GZIP_HEADER = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"  # deflate, mtime 0, OS unknown
FINAL_EMPTY_BLOCK = b"\x03\x00"  # a final, empty, fixed-Huffman block ends the deflate stream
GZIP_TRAILER_BYTES = 8           # crc32 + length mod 2**32
STORED_BLOCK_MAX = 65535         # a stored block holds at most 65535 bytes ...
STORED_BLOCK_OVERHEAD = 5        # ... after a 1-byte header and LEN/NLEN
FRAME_BYTES = len(GZIP_HEADER) + len(FINAL_EMPTY_BLOCK) + GZIP_TRAILER_BYTES


def deflate_piece(data: bytes, level: int) -> bytes:
    """Raw deflate blocks for `data`, byte-aligned, not final: a reusable piece."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def stored_size(n_bytes: int) -> int:
    """Bytes that `n_bytes` occupy as stored deflate blocks."""
    blocks = -(-n_bytes // STORED_BLOCK_MAX)
    return n_bytes + STORED_BLOCK_OVERHEAD * blocks


class PiecewiseGzipWriter:
    """Writes one gzip member to `out`, hashing both sides as it goes."""

    def __init__(self, out: BinaryIO):
        self._out = out
        self._raw_hash = hashlib.sha256()
        self._gz_hash = hashlib.sha256()
        self._crc = 0
        self.raw_bytes = 0
        self.gz_bytes = 0
        self._emit(GZIP_HEADER)

    def _emit(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self._gz_hash.update(data)
        self.gz_bytes += len(data)

    def _account(self, raw: bytes | memoryview) -> None:
        self._raw_hash.update(raw)
        self._crc = zlib.crc32(raw, self._crc)
        self.raw_bytes += len(raw)

    def write_deflated(self, raw: bytes, deflated: bytes) -> None:
        """Append `raw`, given as its already-compressed piece (see deflate_piece)."""
        self._account(raw)
        self._emit(deflated)

    def write_compressed(self, raw: bytes, level: int) -> None:
        self.write_deflated(raw, deflate_piece(raw, level))

    def write_stored(self, raw: bytes) -> None:
        """Append `raw` as stored blocks: for data that would not compress."""
        self._account(raw)
        view = memoryview(raw)
        for start in range(0, len(view), STORED_BLOCK_MAX):
            chunk = view[start:start + STORED_BLOCK_MAX]
            # Byte-aligned stored block: BFINAL=0, BTYPE=00, then LEN and ~LEN.
            self._emit(b"\x00" + struct.pack("<HH", len(chunk), len(chunk) ^ 0xFFFF))
            self._emit(chunk)

    def close(self) -> tuple[str, str]:
        """Finish the member; return (gzip digest, uncompressed digest)."""
        self._emit(FINAL_EMPTY_BLOCK)
        self._emit(struct.pack("<II", self._crc, self.raw_bytes & 0xFFFFFFFF))
        return ("sha256:" + self._gz_hash.hexdigest(),
                "sha256:" + self._raw_hash.hexdigest())
