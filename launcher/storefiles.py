"""How the content store names and writes its files, crash-safely.

Two rules of ``/var/lib/docker`` (and containerd's content store) that every part
of the store follows: a file named after a digest takes its name only from a
well-formed ``sha256:<64 hex>`` digest, and a file reaches its final name only by an
atomic ``rename`` from the store's ``tmp`` directory.

Against a crash of the daemon alone (SIGKILL, a Python exception) the rename is
enough: the page cache outlives the process.  Against a crash of the machine the
store must be opened ``durable``: then the file is fsync'd before the rename and
its directory after it (otherwise the rename itself may be lost), as containerd
does on every commit.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
from pathlib import Path

_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def digest_hex(digest: str) -> str:
    """The hex part of a ``sha256:<64 hex>`` digest; anything else is refused, since
    digests arrive from the network and become file names."""
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise ValueError(f"invalid digest {digest!r}")
    return digest[len("sha256:"):]


def fsync_path(path: Path) -> None:
    """Flush one file's data to disk (containerd does this before a commit)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


LOCK_NAME = "daemon.lock"


def try_lock(root: Path) -> int | None:
    """Take the store's exclusive lock (``flock`` on ``root/daemon.lock``), as
    dockerd refuses to start on a root another dockerd uses; the open fd, to be
    kept for as long as the lock is needed, or None if another process holds it.
    The kernel drops the lock when its holder dies, even by SIGKILL."""
    fd = os.open(Path(root) / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries, so a rename into it survives a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(tmp_dir: Path, final: Path, data: object, durable: bool) -> None:
    """Write ``data`` to a temp file in ``tmp_dir`` and rename it onto ``final``, so
    a reader or a crash sees the old content or the new, never half of it."""
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="json-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(name, final)
        if durable:
            fsync_dir(Path(final).parent)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
