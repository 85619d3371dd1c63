"""`docker run -u USER[:GROUP]`: names and numbers, looked up in the image.

runc resolves the user the way libcontainer's ``user.GetExecUser`` does: a name is
looked up in the container's own /etc/passwd (never the host's), a number is taken
as it is (and gets its passwd entry's group and home when there is one), a group
likewise in /etc/group; without an explicit group the user's supplementary groups
are every /etc/group line that lists the user.  HOME comes from the passwd entry,
else "/".

The files are read from the mounted rootfs on the host side, so they are opened
one path component at a time without following symlinks: an image whose
/etc/passwd is a symlink to a host file must not make the daemon read that file.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path


class UserError(Exception):
    """runc's message, e.g. ``unable to find user x: no matching entries in passwd file``."""


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def _read_in_rootfs(rootfs: Path, relative: str) -> str:
    """The file's text, or "" if it is missing or reached through a symlink."""
    fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        parts = relative.split("/")
        for i, name in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_RDONLY if last else os.O_PATH | os.O_DIRECTORY)
            try:
                nxt = os.open(name, flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                    return ""
                raise
            os.close(fd)
            fd = nxt
        with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as f:
            fd = -1
            return f.read(1 << 20)
    finally:
        if fd >= 0:
            os.close(fd)


def _entries(text: str, fields: int) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            row = line.split(":")
            if len(row) >= fields:
                rows.append(row)
    return rows


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def resolve(rootfs: Path, spec: str) -> ExecUser:
    """``spec`` as `docker run -u` takes it ("" is root) -> ids, groups, home."""
    user, _, group = (spec or "0").partition(":")
    passwd = _entries(_read_in_rootfs(rootfs, "etc/passwd"), 7)
    uid = _number(user)
    entry = next((r for r in passwd if (r[0] == user if uid is None else _number(r[2]) == uid)),
                 None)
    if entry is None and uid is None:
        raise UserError(f"unable to find user {user}: no matching entries in passwd file")
    if entry is not None:
        uid = int(entry[2]) if entry[2].isdigit() else uid
    gid = int(entry[3]) if entry is not None and entry[3].isdigit() else 0
    home = entry[5] if entry is not None else "/"
    groups_text = _read_in_rootfs(rootfs, "etc/group") if (group or entry) else ""
    table = _entries(groups_text, 3)
    groups: tuple[int, ...] = ()
    if group:
        gid = _number(group)
        if gid is None:
            match = next((r for r in table if r[0] == group and r[2].isdigit()), None)
            if match is None:
                raise UserError(f"unable to find group {group}: no matching entries in group file")
            gid = int(match[2])
    elif entry is not None:
        groups = tuple(int(r[2]) for r in table
                       if r[2].isdigit() and len(r) > 3 and entry[0] in r[3].split(",")
                       and int(r[2]) != gid)
    if uid > 2**31 - 1 or gid > 2**31 - 1:
        raise UserError(f"uids and gids must be in range 0-{2**31 - 1}")
    return ExecUser(uid, gid, groups, home or "/")
