"""unpack_layer: OCI layer semantics and overlay whiteouts (hostile tars: test_hostile_layers).

The helpers at the top (``entry``, ``make_tar``, ``busybox_layer_entries``) build
real layer tars in memory and are shared with the store and runtime tests.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path

import pytest

from launcher import linux
from launcher.unpack import OPAQUE_XATTR, LayerError, unpack_layer

MTIME_S = 1_600_000_000
BUSYBOX = Path("/usr/bin/busybox")
BUSYBOX_APPLETS = ("sh", "true", "sleep", "echo", "cat", "hostname", "ls", "id")


def entry(name: str, kind: str = "file", data: bytes = b"", mode: int | None = None,
          link: str = "", uid: int = 0, gid: int = 0,
          mtime: int = MTIME_S) -> tuple[tarfile.TarInfo, bytes | None]:
    """One tar entry: kind is file, dir, symlink, hardlink, chr, blk or fifo."""
    types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
             "hardlink": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE,
             "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}
    info = tarfile.TarInfo(name)
    info.type = types[kind]
    info.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    info.linkname = link
    info.uid, info.gid, info.mtime = uid, gid, mtime
    if kind == "file":
        info.size = len(data)
        return info, data
    return info, None


def make_tar(entries) -> bytes:
    """An uncompressed PAX tar holding ``entries`` in order, names kept verbatim."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def busybox_layer_entries() -> list:
    """A base layer: /bin/busybox and applet symlinks, the usual top-level dirs,
    and /etc and /opt content for the whiteout and opaque tests."""
    entries = [entry("bin/", "dir"),
               entry("bin/busybox", data=BUSYBOX.read_bytes(), mode=0o755)]
    entries += [entry(f"bin/{name}", "symlink", link="busybox") for name in BUSYBOX_APPLETS]
    entries += [entry(f"{d}/", "dir") for d in ("proc", "dev", "sys", "etc", "opt")]
    entries.append(entry("tmp/", "dir", mode=0o1777))
    entries += [entry("etc/motd", data=b"hidden by layer 2\n"),
                entry("etc/issue", data=b"docksim\n"),
                entry("opt/a", data=b"a\n"), entry("opt/b", data=b"b\n")]
    return entries


@contextlib.contextmanager
def scratch_dir():
    """A fresh temp dir, removed afterwards even if a test left a mount in it."""
    path = Path(tempfile.mkdtemp(prefix="docksim-test-"))
    try:
        yield path
    finally:
        for mount_point in reversed(linux.mounts_under(path)):
            linux.umount2(mount_point, linux.MNT_DETACH)  # never delete through it
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def scratch():
    with scratch_dir() as path:
        yield path


def unpack_bytes(raw: bytes, dest: Path) -> int:
    return unpack_layer(io.BytesIO(raw), dest)


@pytest.fixture
def dest(scratch: Path) -> Path:
    d = scratch / "dest"
    d.mkdir()
    return d


# --- what a good layer produces ----------------------------------------------------

def test_files_dirs_modes_owners_mtimes(dest: Path) -> None:
    payload = b"#!/bin/sh\necho hi\n"
    raw = make_tar([
        entry("./", "dir"),
        entry("usr/", "dir", mode=0o750, uid=7, gid=8, mtime=MTIME_S + 1),
        entry("usr/bin/tool", data=payload, mode=0o4755, uid=1000, gid=1001),
        entry("usr/lib/deep/file", data=b"x" * 5000, mode=0o600),  # parents implied
        entry("usr/link", "symlink", link="/etc/passwd", mtime=MTIME_S + 2),
        entry("usr/hard", "hardlink", link="usr/bin/tool"),
    ])
    written = unpack_bytes(raw, dest)

    assert written == len(payload) + 5000
    tool = os.lstat(dest / "usr/bin/tool")
    assert stat.S_IMODE(tool.st_mode) == 0o4755  # setuid kept, unlike tarfile's filter
    assert (tool.st_uid, tool.st_gid) == (1000, 1001)
    assert tool.st_mtime_ns == MTIME_S * 10**9
    assert (dest / "usr/bin/tool").read_bytes() == payload
    usr = os.lstat(dest / "usr")
    assert stat.S_IMODE(usr.st_mode) == 0o750 and (usr.st_uid, usr.st_gid) == (7, 8)
    assert usr.st_mtime_ns == (MTIME_S + 1) * 10**9  # survived writes into it
    implied = os.lstat(dest / "usr/lib")
    assert stat.S_ISDIR(implied.st_mode) and stat.S_IMODE(implied.st_mode) == 0o755
    link = os.lstat(dest / "usr/link")
    assert stat.S_ISLNK(link.st_mode) and os.readlink(dest / "usr/link") == "/etc/passwd"
    assert link.st_mtime_ns == (MTIME_S + 2) * 10**9
    hard = os.lstat(dest / "usr/hard")
    assert hard.st_ino == tool.st_ino and hard.st_nlink == 2


def test_whiteouts_become_overlay_form(dest: Path) -> None:
    raw = make_tar([entry("etc/", "dir"), entry("etc/.wh.motd"),
                    entry("opt/", "dir"), entry("opt/.wh..wh..opq"),
                    entry("opt/c", data=b"c\n"), entry(".wh.top")])
    assert unpack_bytes(raw, dest) == 2

    for hidden in ("etc/motd", "top"):
        st = os.lstat(dest / hidden)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(dest / "opt", OPAQUE_XATTR) == b"y"
    assert sorted(os.listdir(dest)) == ["etc", "opt", "top"]
    assert sorted(os.listdir(dest / "opt")) == ["c"]  # the marker itself is not kept


def test_later_entries_replace_earlier_ones(dest: Path, scratch: Path) -> None:
    canary = scratch / "canary"
    canary.mkdir()
    raw = make_tar([
        entry("x", data=b"old"), entry("x", data=b"new!"),              # file -> file
        entry("d", data=b"file"), entry("d/", "dir"), entry("d/f", data=b"1"),
        entry("evil", "symlink", link="../canary"),                     # symlink ...
        entry("evil/", "dir"), entry("evil/inside", data=b"ok"),        # ... -> real dir
        entry("s", "symlink", link="/etc/shadow"), entry("hs", "hardlink", link="s"),
    ])
    assert unpack_bytes(raw, dest) == 3 + 4 + 4 + 1 + 2
    assert (dest / "x").read_bytes() == b"new!"
    assert (dest / "d/f").read_bytes() == b"1"
    assert not (dest / "evil").is_symlink() and (dest / "evil/inside").read_bytes() == b"ok"
    assert os.listdir(canary) == []
    assert os.readlink(dest / "hs") == "/etc/shadow"  # a link to the symlink itself


def test_busybox_layer_unpacks(dest: Path) -> None:
    written = unpack_bytes(make_tar(busybox_layer_entries()), dest)
    assert written == BUSYBOX.stat().st_size + len(b"hidden by layer 2\ndocksim\na\nb\n")
    assert os.access(dest / "bin/busybox", os.X_OK)
    assert {n: os.readlink(dest / "bin" / n) for n in BUSYBOX_APPLETS} == \
        {n: "busybox" for n in BUSYBOX_APPLETS}
    assert stat.S_IMODE(os.lstat(dest / "tmp").st_mode) == 0o1777


def test_refuses_a_non_empty_destination(dest: Path) -> None:
    (dest / "old").write_text("x")
    with pytest.raises(LayerError, match="not empty"):
        unpack_bytes(make_tar([entry("a", data=b"a")]), dest)


def test_corrupt_tar_is_a_layer_error(dest: Path) -> None:
    raw = make_tar([entry("big", data=b"z" * 10_000)])
    with pytest.raises(LayerError, match="'big'|corrupt"):
        unpack_bytes(raw[:2048], dest)


# --- hostile tars: the corpus is in tests/hostile_layers_corpus.py, run by
# tests/test_hostile_layers.py (through the store, and a few through the daemon)
