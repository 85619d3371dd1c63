"""Apply one image layer (an uncompressed tar stream) to an empty directory.

This is the "extract" phase of a pull: what containerd's ``archive.Apply`` and
Docker's overlay2 ``ApplyDiff`` do for each layer, in one streaming pass over the
tar (read by ``launcher.tarstream``) as its bytes come out of the decompressor.  It keeps
the OCI layer semantics (regular files, directories, symlinks, hard links, mode
including setuid bits, numeric uid/gid, mtimes) and converts OCI whiteouts into the
form overlayfs understands, as Docker's overlay2 driver does:

* ``dir/.wh.NAME``       -> character device 0/0 named ``dir/NAME``
* ``dir/.wh..wh..opq``   -> xattr ``trusted.overlay.opaque=y`` on ``dir``

The daemon runs as root on input from the network, so the policy is explicit and
strict: nothing may be created or changed outside ``dest``.  Because ``dest`` starts
empty and only this function writes into it, the kind of every path it created is
kept in memory; parents are checked against that record (never followed on disk),
and final components are opened with ``O_NOFOLLOW | O_EXCL``.  Refused outright:
absolute names, ``..`` components, writing through any symlink (even one pointing
inside), hard links to anything not already in this layer, device nodes and fifos,
and whiteouts naming ``.`` or ``..``.  The one device node allowed is a character
device 0/0: that *is* a whiteout, in the overlay form some tools already write.
Extended attributes from the tar (``SCHILY.xattr.*``) are not applied: a hostile
``trusted.overlay.*`` xattr could redirect overlayfs lookups.

Device nodes are refused rather than created (dockerd running as root creates
them; rootless dockerd skips them because it cannot): layers come from the
network, and the runtime gives every container its own ``/dev``.  Names longer
than the kernel takes (a component over ``NAME_MAX``, a path over ``PATH_MAX``)
and any other error of a system call are reported naming the entry, and the
caller (``launcher.store``) removes what was written.
"""
from __future__ import annotations

import logging
import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO, Callable

from launcher.tarstream import TarFormatError, TarReader, shown

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_CHUNK_BYTES = 1 << 20
NAME_MAX_BYTES = 255     # one path component (Linux NAME_MAX)
PATH_MAX_BYTES = 4096    # a whole path given to a system call, with its NUL (Linux PATH_MAX)

_DIR, _FILE, _SYMLINK, _WHITEOUT = "dir", "file", "symlink", "whiteout"


class LayerError(Exception):
    """A layer could not be applied; the message names the entry (or layer) and why."""


def _refuse(member_name: str, reason: str) -> LayerError:
    return LayerError(f"entry {shown(member_name)}: {reason}")


def _normalise(raw: str) -> str:
    """A tar path as 'a/b/c' relative to the layer root; ValueError says why not."""
    if raw.startswith("/"):
        raise ValueError("absolute path")
    if "\0" in raw:
        raise ValueError("NUL byte in the name")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError("path leaves the layer")
    if any(len(os.fsencode(p)) > NAME_MAX_BYTES for p in parts):
        raise ValueError(f"a name component is longer than {NAME_MAX_BYTES} bytes")
    return "/".join(parts)


def _clean_name(raw: str) -> str:
    """Normalise a tar path to 'a/b/c' relative to the layer root, or raise."""
    try:
        return _normalise(raw)
    except ValueError as exc:
        raise _refuse(raw, str(exc)) from None


class _Applier:
    """State of one layer extraction: what exists under ``dest`` and its kind."""

    def __init__(self, dest: Path) -> None:
        self.dest = os.fspath(dest)
        self.kinds: dict[str, str] = {"": _DIR}
        self.dir_times: list[tuple[str, int]] = []
        self.bytes_written = 0

    # -- paths -------------------------------------------------------------------

    def _abs(self, rel: str) -> str:
        return os.path.join(self.dest, rel) if rel else self.dest

    def _check_length(self, raw: str, rel: str) -> None:
        if len(os.fsencode(self._abs(rel))) >= PATH_MAX_BYTES:
            raise _refuse(raw, f"path is longer than {PATH_MAX_BYTES} bytes under the layer directory")

    def _ensure_parents(self, raw: str, rel: str) -> None:
        """Make sure every parent of ``rel`` is a real directory we created.

        A missing parent is created (0755, root), as Docker does for tars that omit
        directory entries; a parent that is a symlink is refused even if it points
        inside, because following it is exactly how tar-slip attacks escape.
        """
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            kind = self.kinds.get(prefix)
            if kind == _DIR:
                continue
            if kind == _SYMLINK:
                raise _refuse(raw, f"writes through symlink {prefix!r}")
            if kind is not None:
                raise _refuse(raw, f"parent {prefix!r} is not a directory")
            os.mkdir(self._abs(prefix), 0o755)
            self.kinds[prefix] = _DIR

    def _clear(self, rel: str) -> None:
        """Remove whatever this layer put at ``rel`` so a later entry replaces it."""
        kind = self.kinds.pop(rel, None)
        if kind is None:
            return
        path = self._abs(rel)
        if kind == _DIR:
            shutil.rmtree(path)  # fd-based on Linux: never follows symlinks inside
            prefix = rel + "/"
            for key in [k for k in self.kinds if k.startswith(prefix)]:
                del self.kinds[key]
            self.dir_times = [(p, t) for p, t in self.dir_times
                              if p != rel and not p.startswith(prefix)]
        else:
            os.unlink(path)

    # -- entries -----------------------------------------------------------------

    def apply(self, tar: TarReader, member: tarfile.TarInfo) -> None:
        raw = member.name
        rel = _clean_name(raw)
        if not rel:
            return  # the layer root itself ("./"): dest already exists
        self._check_length(raw, rel)
        base = rel.rsplit("/", 1)[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(raw, rel, base, member)
            return
        if member.ischr() and member.devmajor == 0 and member.devminor == 0:
            self._ensure_parents(raw, rel)
            self._make_whiteout(rel, member)  # already in overlay form
            return
        if member.ischr() or member.isblk():
            raise _refuse(raw, "device nodes are not allowed")
        if member.isfifo():
            raise _refuse(raw, "fifos are not allowed")
        self._ensure_parents(raw, rel)
        if member.isdir():
            self._directory(rel, member)
        elif member.isreg():
            self._regular(tar, rel, member)
        elif member.issym():
            self._symlink(raw, rel, member)
        elif member.islnk():
            self._hardlink(raw, rel, member)
        else:
            raise _refuse(raw, f"unsupported entry type {member.type!r}")

    def _set_owner_mode_time(self, path: str, member: tarfile.TarInfo,
                             with_time: bool = True) -> None:
        # chown first: chown clears setuid/setgid bits, which Docker layers keep
        os.chown(path, member.uid, member.gid, follow_symlinks=False)
        os.chmod(path, stat.S_IMODE(member.mode))
        if with_time:
            mtime_ns = int(member.mtime * 1_000_000_000)
            os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)

    def _directory(self, rel: str, member: tarfile.TarInfo) -> None:
        if self.kinds.get(rel) != _DIR:
            self._clear(rel)
            os.mkdir(self._abs(rel), 0o700)
            self.kinds[rel] = _DIR
        # a directory's mtime changes as entries land in it: set it at the end
        self._set_owner_mode_time(self._abs(rel), member, with_time=False)
        self.dir_times.append((rel, int(member.mtime * 1_000_000_000)))

    def _regular(self, tar: TarReader, rel: str, member: tarfile.TarInfo) -> None:
        self._clear(rel)
        path = self._abs(rel)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            self.kinds[rel] = _FILE
            tar.copy_to(fd)
            os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, stat.S_IMODE(member.mode))
            mtime_ns = int(member.mtime * 1_000_000_000)
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)
        self.bytes_written += member.size

    def _symlink(self, raw: str, rel: str, member: tarfile.TarInfo) -> None:
        # the target is stored verbatim and never followed here, so any target is fine
        # that symlink(2) takes
        target = os.fsencode(member.linkname)
        if b"\0" in target or not target or len(target) >= PATH_MAX_BYTES:
            raise _refuse(raw, f"symlink target {shown(member.linkname)} is empty, too long or has a NUL")
        self._clear(rel)
        path = self._abs(rel)
        os.symlink(member.linkname, path)
        self.kinds[rel] = _SYMLINK
        os.chown(path, member.uid, member.gid, follow_symlinks=False)
        mtime_ns = int(member.mtime * 1_000_000_000)
        os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)

    def _hardlink(self, raw: str, rel: str, member: tarfile.TarInfo) -> None:
        target = member.linkname
        if target.startswith("/") or ".." in target.split("/"):
            raise _refuse(raw, f"hardlink target {shown(target)} leaves the layer")
        try:
            target_rel = _normalise(target)
        except ValueError as exc:
            raise _refuse(raw, f"hardlink target {shown(target)}: {exc}") from None
        kind = self.kinds.get(target_rel)
        if kind not in (_FILE, _SYMLINK):
            what = "is not in the layer yet" if kind is None else f"is a {kind}"
            raise _refuse(raw, f"hardlink target {shown(target)} {what}")
        if target_rel == rel:
            return  # a link to itself: nothing to do
        self._clear(rel)
        os.link(self._abs(target_rel), self._abs(rel), follow_symlinks=False)
        self.kinds[rel] = kind

    def _whiteout(self, raw: str, rel: str, base: str, member: tarfile.TarInfo) -> None:
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        if base == OPAQUE_MARKER:
            self._ensure_parents(raw, rel)
            os.setxattr(self._abs(parent), OPAQUE_XATTR, b"y", follow_symlinks=False)
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            log.debug("skipping aufs metadata entry %r", raw)  # e.g. .wh..wh.plnk
            return
        hidden = base[len(WHITEOUT_PREFIX):]
        if hidden in ("", ".", ".."):
            raise _refuse(raw, f"whiteout names {hidden or 'nothing'!r}")
        self._ensure_parents(raw, rel)
        self._make_whiteout(f"{parent}/{hidden}" if parent else hidden, member)

    def _make_whiteout(self, target: str, member: tarfile.TarInfo) -> None:
        self._clear(target)
        path = self._abs(target)
        os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        self.kinds[target] = _WHITEOUT
        os.chown(path, member.uid, member.gid, follow_symlinks=False)
        # the entry's mtime, so that one layer always unpacks to the same tree
        mtime_ns = int(member.mtime * 1_000_000_000)
        os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)

    def finish(self) -> None:
        # deepest first, so setting a child's time does not disturb its parent again
        for rel, mtime_ns in sorted(self.dir_times, key=lambda t: -t[0].count("/")):
            os.utime(self._abs(rel), ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def unpack_layer(tar_stream: BinaryIO | Callable[[], bytes], dest: Path) -> int:
    """Apply an uncompressed layer tar to the empty ``dest``.

    ``tar_stream`` is a binary file, or a function returning the next chunk of the
    tar (b"" at its end), as ``launcher.decompress.TarStream.read_chunk`` does.
    Returns the bytes written (sum of regular file sizes).  Raises ``LayerError``
    naming the entry and the reason for anything the policy refuses or a corrupt tar;
    whatever was written before the error stays in ``dest`` for the caller to remove.
    """
    dest = Path(dest)
    if any(os.scandir(dest)):
        raise LayerError(f"destination {dest} is not empty")
    next_chunk = tar_stream if callable(tar_stream) else (lambda: tar_stream.read(_CHUNK_BYTES))
    applier = _Applier(dest)
    tar = TarReader(next_chunk)
    try:
        for member in tar.members():
            try:
                applier.apply(tar, member)
            except OSError as exc:  # ENOSPC, EMLINK, ...: say which entry met it
                raise _refuse(member.name, exc.strerror or str(exc)) from None
    except TarFormatError as exc:
        message = str(exc)
        raise LayerError(message if message.startswith("entry ") else f"corrupt tar: {message}") from None
    applier.finish()
    return applier.bytes_written
