"""A one-pass tar reader for layer streams: headers parsed, file data copied without detours.

Python's `tarfile` in stream mode ("r|") re-buffers everything in 10 KiB records
and copies each byte three times before a caller sees it.  A layer apply is a
straight copy from the decompressed stream to files, so this reader hands out
file data as slices of the chunks it was given, straight to `os.write`.

It understands what image layers contain (as Go's archive/tar, which built
them, writes): ustar and GNU headers (via `tarfile.TarInfo.frombuf`), PAX
extended headers (`x`, and `g` for global values: path, linkpath, size, uid,
gid, mtime, uname, gname), GNU long names and long link names (`L`, `K`).
Sparse files (GNU `S` or PAX `GNU.sparse.*`) are refused: no image builder
writes them and a sparse map is one more way to lie about sizes.  Types with
no data (links, directories, devices, fifos) carry none whatever their size
field says, as in Go's reader.

Headers come from the network, so their size is bounded: one metadata record
(PAX data, a GNU long name) is at most `MAX_METADATA_BYTES`, and so is all the
PAX data that applies to one entry (local records add up; so do global ones).
Numbers must fit what the kernel takes (uid and gid below 2**32 - 1, an mtime
that is a finite number of seconds a 64-bit nanosecond count can hold), else
the entry is refused by name instead of failing deep inside a system call.
"""
from __future__ import annotations

import math
import os
import tarfile
from typing import Callable, Iterator

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_HEADER_ONLY = {tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE,
                tarfile.DIRTYPE, tarfile.FIFOTYPE}
_PAX_INT = {"size": "size", "uid": "uid", "gid": "gid"}
_PAX_STR = {"path": "name", "linkpath": "linkname", "uname": "uname", "gname": "gname"}
MAX_METADATA_BYTES = 1 << 20     # one PAX record set or long name, and all PAX data of one entry
MAX_ID = 2**32 - 2               # (uid_t)-1 means "leave unchanged" to chown(2)
MAX_MTIME_S = 2**63 // 10**9 - 1  # utimensat takes nanoseconds in 64 bits
_SHOWN_CHARS = 120               # a name in a message is cut to this, so the message stays one line


def shown(name: str) -> str:
    """A tar name for an error message: its repr, cut when it is very long."""
    if len(name) <= _SHOWN_CHARS:
        return repr(name)
    return repr(name[:_SHOWN_CHARS]) + f"...({len(name)} chars)"


class TarFormatError(Exception):
    """The stream is not a tar archive docksim will read; the text says where."""


def _parse_pax(data: bytes, where: str) -> dict[str, str]:
    """PAX records, "LEN KEY=VALUE\\n" each (POSIX.1-2001 pax format)."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        try:
            space = data.index(b" ", pos)
            length = int(data[pos:space])
            record = data[space + 1:pos + length]
        except ValueError:
            raise TarFormatError(f"{where}: corrupt pax header") from None
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise TarFormatError(f"{where}: corrupt pax record")
        key, _, value = record[:-1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def _apply_pax(info: tarfile.TarInfo, pax: dict[str, str]) -> None:
    for key, value in pax.items():
        if key.startswith("GNU.sparse."):
            raise TarFormatError(f"entry {shown(info.name)}: sparse files are not supported")
        try:
            if key in _PAX_STR:
                setattr(info, _PAX_STR[key], value)
            elif key in _PAX_INT:
                setattr(info, _PAX_INT[key], int(value))
            elif key == "mtime":
                info.mtime = float(value)
        except ValueError:
            raise TarFormatError(f"entry {shown(info.name)}: bad pax value {key}={shown(value)}") from None
    if info.type == tarfile.DIRTYPE:
        info.name = info.name.rstrip("/")


def _check_numbers(info: tarfile.TarInfo) -> None:
    """Refuse owner ids and times the kernel would reject or misread (GNU base-256
    and PAX fields can hold any number, negative ones included)."""
    for what, value in (("uid", info.uid), ("gid", info.gid)):
        if not 0 <= value <= MAX_ID:
            raise TarFormatError(f"entry {shown(info.name)}: {what} {value} out of range")
    if not (math.isfinite(info.mtime) and abs(info.mtime) <= MAX_MTIME_S):
        raise TarFormatError(f"entry {shown(info.name)}: mtime {info.mtime} out of range")


class TarReader:
    """Members of a tar stream given as chunks by `next_chunk()` (b"" at its end).

    Iterate over `members()`; for a regular file, call `copy_to(fd)` (or nothing:
    unread data is skipped) before asking for the next member.
    """

    def __init__(self, next_chunk: Callable[[], bytes]):
        self._next_chunk = next_chunk
        self._buf = b""
        self._pos = 0
        self._remaining = 0      # unread data bytes of the current member
        self._padding = 0        # then this many bytes up to the next block
        self._name = ""

    # -- the byte stream ----------------------------------------------------------

    def _fill(self) -> bool:
        while self._pos >= len(self._buf):
            chunk = self._next_chunk()
            if not chunk:
                return False
            self._buf, self._pos = chunk, 0
        return True

    def _read_exact(self, n: int) -> bytes | None:
        """n bytes, or None at a clean end of stream; TarFormatError if it ends inside."""
        if len(self._buf) - self._pos >= n:
            self._pos += n
            return self._buf[self._pos - n:self._pos]
        parts, need = [], n
        while need:
            if not self._fill():
                if need == n:
                    return None
                raise TarFormatError(f"entry {shown(self._name)}: archive ends early")
            take = min(need, len(self._buf) - self._pos)
            parts.append(self._buf[self._pos:self._pos + take])
            self._pos += take
            need -= take
        return b"".join(parts)

    def _skip(self, n: int) -> None:
        while n:
            if not self._fill():
                raise TarFormatError(f"entry {shown(self._name)}: archive ends early")
            take = min(n, len(self._buf) - self._pos)
            self._pos += take
            n -= take

    def copy_to(self, fd: int) -> int:
        """Write the current member's data to `fd`; returns the bytes written."""
        written = 0
        while self._remaining:
            if not self._fill():
                raise TarFormatError(f"entry {shown(self._name)}: data ends early")
            take = min(self._remaining, len(self._buf) - self._pos)
            view = memoryview(self._buf)[self._pos:self._pos + take]
            while view:
                view = view[os.write(fd, view):]
            self._pos += take
            self._remaining -= take
            written += take
        return written

    def _data(self, size: int) -> bytes:
        """A metadata member's data (PAX records, a long name), padding skipped."""
        if size > MAX_METADATA_BYTES:
            raise TarFormatError(f"entry {shown(self._name)}: metadata record of {size} bytes "
                                 f"(the limit is {MAX_METADATA_BYTES})")
        data = self._read_exact(size) if size else b""
        if data is None:
            raise TarFormatError(f"entry {shown(self._name)}: archive ends early")
        self._skip(-size % BLOCK)
        return data

    def _check_metadata_total(self, total: int) -> None:
        # many small PAX headers in a row must not add up to more than one big one
        if total > MAX_METADATA_BYTES:
            raise TarFormatError(f"entry {shown(self._name)}: {total} bytes of pax headers "
                                 f"(the limit is {MAX_METADATA_BYTES})")

    # -- members ------------------------------------------------------------------

    def members(self) -> Iterator[tarfile.TarInfo]:
        global_pax: dict[str, str] = {}
        local_pax: dict[str, str] = {}
        global_bytes = local_bytes = 0  # PAX data read so far, against MAX_METADATA_BYTES
        long_name = long_link = None
        while True:
            self._skip(self._remaining + self._padding)
            self._remaining = self._padding = 0
            block = self._read_exact(BLOCK)
            if block is None or block == _ZERO_BLOCK:
                return  # end of archive (or a stream without the end marker)
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as exc:
                raise TarFormatError(f"after entry {shown(self._name)}: corrupt tar header ({exc})") from None
            self._name = info.name
            if info.type == tarfile.XHDTYPE:
                data = self._data(info.size)
                local_bytes += len(data)
                self._check_metadata_total(local_bytes)
                local_pax.update(_parse_pax(data, f"entry {shown(info.name)}"))
            elif info.type == tarfile.XGLTYPE:
                data = self._data(info.size)
                global_bytes += len(data)
                self._check_metadata_total(global_bytes)
                global_pax.update(_parse_pax(data, f"entry {shown(info.name)}"))
            elif info.type == tarfile.GNUTYPE_LONGNAME:
                long_name = self._data(info.size).rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif info.type == tarfile.GNUTYPE_LONGLINK:
                long_link = self._data(info.size).rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif info.type == tarfile.GNUTYPE_SPARSE:
                raise TarFormatError(f"entry {shown(info.name)}: sparse files are not supported")
            else:
                if long_name is not None:
                    info.name = long_name.rstrip("/") if info.type == tarfile.DIRTYPE else long_name
                if long_link is not None:
                    info.linkname = long_link
                _apply_pax(info, {**global_pax, **local_pax})
                _check_numbers(info)
                local_pax, local_bytes, long_name, long_link = {}, 0, None, None
                size = 0 if info.type in _HEADER_ONLY else info.size
                if size < 0:
                    raise TarFormatError(f"entry {shown(info.name)}: negative size")
                self._name = info.name
                self._remaining, self._padding = size, -size % BLOCK
                yield info
