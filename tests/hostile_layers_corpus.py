"""A corpus of hostile layer blobs, one row each, for tests/test_hostile_layers.py.

Each row builds a layer blob (gzip, zstd or a plain tar), the diff_id its image
config would list, and says what must happen when a daemon registers it:

* ``refused``: registration fails with a LayerError containing this text;
* ``neutralised``: registration succeeds and ``check(diff, canary)`` holds on the
  unpacked layer (the hostile part was kept inert: a symlink stored, not followed;
  a whiteout made from a link, not the link).

``@CANARY@`` in names and link targets stands for the sentinel directory outside
the layer, filled in when a row is built, so absolute paths aim at it; ``@UP@``
stands for enough ``../`` to climb from any layer directory to ``/``, so that
``@UP@@CANARY@`` is a relative path that would land in the sentinel too.

What docksim does with device nodes is a choice (documented in launcher.unpack):
they are refused, where dockerd as root creates them and rootless dockerd skips
them; the one character device allowed is 0/0, the overlay form of a whiteout.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import zstandard

from launcher.manifest import LAYER_COMPRESSION
from launcher.unpack import OPAQUE_XATTR
from tests.test_unpack import entry, make_tar

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
PLAIN = "application/vnd.oci.image.layer.v1.tar"
MAX_LAYER_BYTES = 8_000_000      # the cap the store is given (the daemon's --max-layer-mb 8)
BOMB_BYTES = 64_000_000          # what a bomb would inflate to: 8x the cap

Entries = Callable[[str], list]  # canary path -> tar entries


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[str], tuple[bytes, str, str]]  # canary -> (blob, media type, diff_id)
    refused: str | None = None                      # text of the LayerError, or None
    check: Callable[[Path, Path], None] | None = None

    @property
    def outcome(self) -> str:
        return "refused" if self.refused is not None else "neutralised"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _compress(tar: bytes, media_type: str) -> bytes:
    kind = LAYER_COMPRESSION[media_type]
    if kind == "gzip":
        return gzip.compress(tar, compresslevel=1, mtime=0)
    if kind == "zstd":
        return zstandard.ZstdCompressor(write_checksum=True).compress(tar)
    return tar


UP = "../" * 32


def _filled(entries: list, canary: str) -> list:
    def fill(text: str) -> str:
        return text.replace("@UP@@CANARY@", UP + canary.lstrip("/")).replace("@CANARY@", canary)
    for info, _ in entries:
        info.name, info.linkname = fill(info.name), fill(info.linkname)
        info.pax_headers = {key: fill(value) for key, value in info.pax_headers.items()}
    return entries


def tar_of(make: Entries | list, media_type: str = GZIP):
    """A row builder from tar entries (or a function of the canary path giving them)."""
    def build(canary: str) -> tuple[bytes, str, str]:
        entries = make(canary) if callable(make) else [(_copy(i), d) for i, d in make]
        tar = make_tar(_filled(entries, canary))
        return _compress(tar, media_type), media_type, sha256(tar)
    return build


def raw_tar(make: Callable[..., bytes], media_type: str = GZIP, cut: Callable[[bytes], bytes] | None = None,
            aim: bool = False):
    """A row builder from raw tar bytes (`make(canary)` when `aim`, else `make()`);
    `cut` spoils the compressed blob afterwards (the diff_id stays the one of the
    whole tar, as the config would say)."""
    def build(canary: str) -> tuple[bytes, str, str]:
        tar = make(canary) if aim else make()
        blob = _compress(tar, media_type)
        return (cut(blob) if cut else blob), media_type, sha256(tar)
    return build


def _copy(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """A fresh TarInfo like `info` (rows are built more than once; _filled edits names)."""
    twin = tarfile.TarInfo(info.name)
    for attr in ("type", "mode", "linkname", "uid", "gid", "mtime", "size", "devmajor", "devminor"):
        setattr(twin, attr, getattr(info, attr))
    twin.pax_headers = dict(info.pax_headers)
    return twin


def device(item, major: int, minor: int):
    item[0].devmajor, item[0].devminor = major, minor
    return item


def with_pax(item, **headers):
    item[0].pax_headers = {**item[0].pax_headers, **headers}
    return item


# -- raw tars the tarfile writer will not make ---------------------------------------------

def _header(name: str, kind: bytes, size: int = 0, fmt=tarfile.USTAR_FORMAT) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime = kind, size, 1_600_000_000
    return info.tobuf(fmt, "utf-8", "surrogateescape")


def _record(name: str, kind: bytes, data: bytes) -> bytes:
    return _header(name, kind, len(data)) + data + bytes(-len(data) % 512)


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def huge_pax() -> bytes:
    return _record("pax", tarfile.XHDTYPE, _pax_record("comment", "x" * (1 << 20))) \
        + _record("f", tarfile.REGTYPE, b"x") + bytes(1024)


def small_pax() -> bytes:
    return _record("pax", tarfile.XHDTYPE, _pax_record("comment", "x" * 10_000)) \
        + _record("f", tarfile.REGTYPE, b"x") + bytes(1024)


def many_pax() -> bytes:
    """Forty PAX headers of 40 kB before one entry, with distinct keys: 1.6 MB in all."""
    headers = b"".join(_record("pax", tarfile.XHDTYPE, _pax_record(f"docksim.k{i}", "v" * 40_000))
                       for i in range(40))
    return headers + _record("f", tarfile.REGTYPE, b"x") + bytes(1024)


def huge_gnu_name() -> bytes:
    return _record("././@LongLink", tarfile.GNUTYPE_LONGNAME, b"n" * ((1 << 20) + 1)) \
        + _record("f", tarfile.REGTYPE, b"x") + bytes(1024)


def gnu_long_dotdot(canary: str) -> bytes:
    name = UP + canary.lstrip("/") + "/" + "d" * 120
    return _record("././@LongLink", tarfile.GNUTYPE_LONGNAME, name.encode() + b"\0") \
        + _record("short", tarfile.REGTYPE, b"x") + bytes(1024)


def size_beyond_data() -> bytes:
    # GNU base-256 numbers: a size field of 100 GB for a 9-byte body
    return _header("big", tarfile.REGTYPE, size=10**11, fmt=tarfile.GNU_FORMAT) + b"only this" + bytes(503)


def bad_checksum() -> bytes:
    block = bytearray(make_tar([entry("f", data=b"x")]))
    block[148:156] = b"0000000\0"
    return bytes(block)


def no_end_blocks() -> bytes:
    return make_tar([entry("f", data=b"kept")])[:1024]  # header + data, no zero blocks


@functools.cache
def bomb_tar() -> bytes:
    return make_tar([entry("zeros", data=bytes(BOMB_BYTES))])


@functools.cache
def small_tar() -> bytes:
    return make_tar([entry("payload", data=os.urandom(200_000))])


def gzip_members_bomb(canary: str) -> tuple[bytes, str, str]:
    """Many small gzip members (each one legal) whose sum passes the cap."""
    tar = bomb_tar()
    step = 4_000_000
    blob = b"".join(gzip.compress(tar[i:i + step], compresslevel=1, mtime=0)
                    for i in range(0, len(tar), step))
    return blob, GZIP, sha256(tar)


def not_compressed(canary: str) -> tuple[bytes, str, str]:
    tar = small_tar()
    return tar, GZIP, sha256(tar)  # a plain tar under the gzip media type


def flip_crc(blob: bytes) -> bytes:
    spoilt = bytearray(blob)
    spoilt[-6] ^= 0xFF
    return bytes(spoilt)


# -- checks for neutralised rows --------------------------------------------------------------

def is_whiteout(path: Path) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def names(diff: Path) -> list[str]:
    return sorted(str(p.relative_to(diff)) for p in diff.rglob("*"))


def check_symlink_kept(diff: Path, canary: Path) -> None:
    assert os.readlink(diff / "out") == str(canary / "file") and names(diff) == ["out"]


def check_symlink_replaced(diff: Path, canary: Path) -> None:
    assert not (diff / "f").is_symlink() and (diff / "f").read_bytes() == b"new"


def check_empty(diff: Path, canary: Path) -> None:
    assert names(diff) == [] and stat.S_ISDIR(os.lstat(diff).st_mode)


def check_link_to_symlink(diff: Path, canary: Path) -> None:
    assert os.lstat(diff / "h").st_ino == os.lstat(diff / "s").st_ino
    assert os.readlink(diff / "h") == str(canary / "file")


def check_rewritten_hardlink(diff: Path, canary: Path) -> None:
    assert (diff / "f").read_bytes() == b"orig" and (diff / "h").read_bytes() == b"new"
    assert os.lstat(diff / "f").st_ino != os.lstat(diff / "h").st_ino


def check_root_opaque(diff: Path, canary: Path) -> None:
    assert os.getxattr(diff, OPAQUE_XATTR) == b"y" and names(diff) == []


def check_dir_opaque(diff: Path, canary: Path) -> None:
    assert os.getxattr(diff / "a", OPAQUE_XATTR) == b"y" and names(diff) == ["a"]


def check_x_is_whiteout(diff: Path, canary: Path) -> None:
    assert is_whiteout(diff / "x") and names(diff) == ["x"]


def check_evil_whited_out(diff: Path, canary: Path) -> None:
    assert is_whiteout(diff / "evil") and names(diff) == ["evil"]


def check_last_wins(diff: Path, canary: Path) -> None:
    assert (diff / "x").read_bytes() == b"second" and (diff / "d").read_bytes() == b"file again"
    assert stat.S_IMODE(os.lstat(diff / "m").st_mode) == 0o700
    assert names(diff) == ["d", "m", "x"]


def check_kept_file(diff: Path, canary: Path) -> None:
    assert (diff / "f").read_bytes() == b"kept"


CANARY_FILE = "@CANARY@/file"
E = entry

CASES = [
    # path traversal and absolute names
    Case("dotdot", tar_of([E("@UP@@CANARY@/pwned", data=b"x")]), "path leaves the layer"),
    Case("dotdot inside", tar_of([E("a/", "dir"), E("a/../@UP@@CANARY@/pwned", data=b"x")]),
         "path leaves the layer"),
    Case("dotdot after dot", tar_of([E("./@UP@@CANARY@/pwned", data=b"x")]), "path leaves the layer"),
    Case("dotdot directory", tar_of([E("@UP@@CANARY@/newdir/", "dir")]), "path leaves the layer"),
    Case("dotdot in a pax path", tar_of([with_pax(E("innocent", data=b"x"), path="@UP@@CANARY@/pwned")]),
         "path leaves the layer"),
    Case("dotdot in a GNU long name", raw_tar(gnu_long_dotdot, aim=True), "path leaves the layer"),
    Case("absolute path into the canary", tar_of([E("@CANARY@/pwned", data=b"x")]), "absolute path"),
    Case("absolute path", tar_of([E("/etc/passwd", data=b"root::0:0::/:/bin/sh\n")]), "absolute path"),
    # symlinks
    Case("write through symlink", tar_of([E("evil", "symlink", link="@UP@@CANARY@"),
                                          E("evil/pwned", data=b"x")]), "writes through symlink 'evil'"),
    Case("write through absolute symlink", tar_of([E("evil", "symlink", link="@CANARY@"),
                                                   E("evil/sub/pwned", data=b"x")]), "writes through symlink"),
    Case("write through symlink pointing inside", tar_of([E("d/", "dir"), E("lnk", "symlink", link="d"),
                                                          E("lnk/x", data=b"x")]), "writes through symlink 'lnk'"),
    Case("directory through symlink", tar_of([E("evil", "symlink", link="@CANARY@"),
                                              E("evil/newdir/", "dir")]), "writes through symlink"),
    Case("symlink chain", tar_of([E("a", "symlink", link="@CANARY@"), E("b", "symlink", link="a"),
                                  E("b/pwned", data=b"x")]), "writes through symlink 'b'"),
    Case("symlink out of the layer, alone", tar_of([E("out", "symlink", link=CANARY_FILE)]),
         check=check_symlink_kept),
    Case("symlink replaced by a file", tar_of([E("f", "symlink", link=CANARY_FILE),
                                               E("f", data=b"new")]), check=check_symlink_replaced),
    Case("symlink named .", tar_of([E(".", "symlink", link="@CANARY@")]), check=check_empty),
    Case("symlink target over PATH_MAX", tar_of([E("s", "symlink", link="t/" * 2100)]),
         "symlink target"),
    # hard links
    Case("hardlink to /etc/passwd", tar_of([E("h", "hardlink", link="/etc/passwd")]), "leaves the layer"),
    Case("hardlink out of the layer", tar_of([E("h", "hardlink", link="@UP@@CANARY@/file")]), "leaves the layer"),
    Case("hardlink to a name not yet seen", tar_of([E("h", "hardlink", link="later"),
                                                    E("later", data=b"x")]), "not in the layer yet"),
    Case("hardlink through a symlink", tar_of([E("s", "symlink", link="@CANARY@"),
                                               E("h", "hardlink", link="s/file")]), "not in the layer yet"),
    Case("hardlink to a directory", tar_of([E("d/", "dir"), E("h", "hardlink", link="d")]), "is a dir"),
    Case("hardlink to a symlink out of the layer", tar_of([E("s", "symlink", link=CANARY_FILE),
                                                           E("h", "hardlink", link="s")]),
         check=check_link_to_symlink),
    Case("rewriting a hardlinked name", tar_of([E("f", data=b"orig"), E("h", "hardlink", link="f"),
                                                E("h", data=b"new")]), check=check_rewritten_hardlink),
    # whiteouts
    Case("whiteout of ..", tar_of([E(".wh...")]), "whiteout names '..'"),
    Case("whiteout of .. in a dir", tar_of([E("a/", "dir"), E("a/.wh...")]), "whiteout names '..'"),
    Case("whiteout of .", tar_of([E("a/", "dir"), E("a/.wh..")]), "whiteout names '.'"),
    Case("whiteout through symlink", tar_of([E("evil", "symlink", link="@CANARY@"), E("evil/.wh.file")]),
         "writes through symlink"),
    Case("opaque marker through symlink", tar_of([E("evil", "symlink", link="@CANARY@"),
                                                  E("evil/.wh..wh..opq")]), "writes through symlink"),
    Case("file under a file", tar_of([E("f", data=b"x"), E("f/g", data=b"y")]), "not a directory"),
    Case("opaque marker under a file", tar_of([E("f", data=b"1"), E("f/.wh..wh..opq")]), "not a directory"),
    Case("opaque marker at the layer root", tar_of([E(".wh..wh..opq")]), check=check_root_opaque),
    Case("opaque marker as a directory", tar_of([E("a/", "dir"), E("a/.wh..wh..opq/", "dir")]),
         check=check_dir_opaque),
    Case("whiteout that is a symlink out", tar_of([E(".wh.x", "symlink", link=CANARY_FILE)]),
         check=check_x_is_whiteout),
    Case("whiteout that is a hardlink out", tar_of([E(".wh.x", "hardlink", link="/etc/passwd")]),
         check=check_x_is_whiteout),
    Case("whiteout over a symlink out", tar_of([E("evil", "symlink", link=CANARY_FILE), E(".wh.evil")]),
         check=check_evil_whited_out),
    Case("aufs metadata", tar_of([E(".wh..wh.plnk/", "dir"), E(".wh..wh.aufs", data=b"x")]),
         check=check_empty),
    # device nodes and fifos
    Case("character device", tar_of([device(E("mem", "chr"), 1, 1)]), "device nodes are not allowed"),
    Case("block device", tar_of([device(E("sda", "blk"), 8, 0)]), "device nodes are not allowed"),
    Case("device into the canary", tar_of([device(E("@CANARY@/mem", "chr"), 1, 1)]), "absolute path"),
    Case("fifo", tar_of([E("pipe", "fifo")]), "fifos are not allowed"),
    Case("character device 0/0 is a whiteout", tar_of([E("x", "chr")]), check=check_x_is_whiteout),
    # duplicate entries
    Case("duplicate entries, last wins",
         tar_of([E("x", data=b"first"), E("x", data=b"second"), E("d", data=b"file"), E("d/", "dir"),
                 E("d/inner", data=b"1"), E("d", data=b"file again"), E("m/", "dir", mode=0o755),
                 E("m/", "dir", mode=0o700)]), check=check_last_wins),
    Case("duplicate name, file then symlink then write", tar_of([E("d/", "dir"), E("d", "symlink", link="@CANARY@"),
                                                                 E("d/pwned", data=b"x")]),
         "writes through symlink 'd'"),
    # huge headers and numbers
    Case("name component over NAME_MAX", tar_of([E("a" * 300, data=b"x")]), "longer than 255 bytes"),
    Case("path over PATH_MAX", tar_of([E(("d" * 200 + "/") * 21 + "f", data=b"x")]),
         "longer than 4096 bytes"),
    Case("pax header over 1 MiB", raw_tar(huge_pax), "metadata record of"),
    Case("many pax headers adding up", raw_tar(many_pax), "bytes of pax headers"),
    Case("GNU long name over 1 MiB", raw_tar(huge_gnu_name), "metadata record of"),
    Case("pax uid out of range", tar_of([with_pax(E("u", data=b"x"), uid="99999999999")]),
         "uid 99999999999 out of range"),
    Case("pax gid negative", tar_of([with_pax(E("u", data=b"x"), gid="-5")]), "gid -5 out of range"),
    Case("pax mtime not a number", tar_of([with_pax(E("u", data=b"x"), mtime="nan")]), "mtime nan"),
    Case("pax mtime past 2262", tar_of([with_pax(E("u", data=b"x"), mtime="1e300")]), "mtime"),
    Case("pax size negative", tar_of([with_pax(E("u", data=b"x"), size="-5")]), "negative size"),
    Case("size far beyond the data", raw_tar(size_beyond_data, PLAIN), "data ends early"),
    # bombs, truncation, broken compression
    Case("gzip bomb", raw_tar(bomb_tar), "passes the limit of 8000000 bytes"),
    Case("zstd bomb", raw_tar(bomb_tar, ZSTD), "passes the limit"),
    Case("plain tar over the limit", raw_tar(bomb_tar, PLAIN), "passes the limit"),
    Case("bomb in many gzip members", gzip_members_bomb, "passes the limit"),
    Case("truncated gzip", raw_tar(small_tar, cut=lambda b: b[:len(b) // 2]), "truncated"),
    Case("truncated zstd", raw_tar(small_tar, ZSTD, cut=lambda b: b[:len(b) // 2]), "zstd"),
    Case("truncated tar in the data", raw_tar(lambda: small_tar()[:100_000], PLAIN), "data ends early"),
    Case("truncated tar in a header", raw_tar(lambda: small_tar()[:300], PLAIN), "archive ends early"),
    Case("truncated tar in pax data", raw_tar(lambda: small_pax()[:4000], PLAIN), "archive ends early"),
    Case("bad gzip", raw_tar(small_tar, cut=lambda b: b[:10] + os.urandom(500)), "gzip"),
    Case("gzip with a wrong CRC", raw_tar(small_tar, cut=flip_crc), "broken compressed data"),
    Case("garbage after the gzip member", raw_tar(small_tar, cut=lambda b: b + b"garbage"), "not gzip"),
    Case("plain tar under the gzip type", not_compressed, "broken compressed data"),
    Case("corrupt header checksum", raw_tar(bad_checksum, PLAIN), "corrupt tar"),
    Case("tar without end blocks", raw_tar(no_end_blocks), check=check_kept_file),
]


def by_name() -> dict[str, Case]:
    table = {case.name: case for case in CASES}
    assert len(table) == len(CASES), "two rows share a name"
    return table
