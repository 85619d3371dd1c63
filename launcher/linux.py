"""Thin ctypes wrappers for the Linux syscalls a container runtime needs.

Python 3.11 has no ``os.unshare``, ``mount`` or ``pivot_root``, so this module binds
them from libc, the same calls runc makes (in Go, via ``golang.org/x/sys/unix``) when
it sets up a container.  Every wrapper raises ``OSError`` with the errno and the
arguments on failure.

The functions are also called from a freshly forked child of a multi-threaded daemon,
where nothing may log or import: they only touch ctypes and ``os``, and every constant
and libc symbol is resolved once, at import time.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform

# clone(2) / unshare(2) flags
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
CLONE_NEWUSER = 0x10000000

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_STRICTATIME = 0x1000000

# umount2(2) flags
MNT_DETACH = 0x2

# prctl(2)
PR_SET_PDEATHSIG = 1

# netdevice(7) ioctls and flags
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
AF_INET = 2
SOCK_DGRAM = 2
SOCK_CLOEXEC = 0o2000000

_PIVOT_ROOT_NR = {"x86_64": 155, "aarch64": 41}
_IFREQ_SIZE = 40  # struct ifreq: 16-byte name + 24-byte union; flags are a short at 16

_libc = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                        ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.syscall.argtypes = [ctypes.c_long, ctypes.c_char_p, ctypes.c_char_p]
_libc.socket.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_char_p]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
_libc.signal.restype = ctypes.c_void_p

_machine = platform.machine()


def _fs(path: str | os.PathLike | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def _check(result: int, what: str) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def unshare(flags: int) -> None:
    """unshare(2): move the calling process into new namespaces."""
    _check(_libc.unshare(flags), f"unshare(0x{flags:x})")


def mount(source: str | None, target: str | os.PathLike, fstype: str | None,
          flags: int = 0, data: str | None = None) -> None:
    """mount(2)."""
    _check(_libc.mount(_fs(source), _fs(target), _fs(fstype), flags,
                       None if data is None else data.encode()),
           f"mount {fstype or 'bind'} on {os.fsdecode(target)}")


def umount2(target: str | os.PathLike, flags: int = 0) -> None:
    """umount2(2); MNT_DETACH is the lazy unmount runc and dockerd fall back to."""
    _check(_libc.umount2(_fs(target), flags), f"umount {os.fsdecode(target)}")


def pivot_root(new_root: str | os.PathLike, put_old: str | os.PathLike) -> None:
    """pivot_root(2), which glibc does not wrap: called by syscall number."""
    try:
        number = _PIVOT_ROOT_NR[_machine]
    except KeyError:
        raise OSError(errno.ENOSYS, f"pivot_root: unsupported architecture {_machine}") from None
    _check(_libc.syscall(number, _fs(new_root), _fs(put_old)), "pivot_root")


def sethostname(name: str) -> None:
    """sethostname(2), inside the container's own UTS namespace."""
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), f"sethostname {name!r}")


def set_parent_death_signal(signum: int) -> None:
    """prctl(PR_SET_PDEATHSIG): get ``signum`` when the parent process dies."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def reset_signal(signum: int) -> None:
    """Set a signal back to SIG_DFL with libc, not the ``signal`` module.

    Python ignores SIGPIPE and SIGXFSZ; ignored signals survive execve, so a container
    would inherit them (subprocess's ``restore_signals`` fixes the same problem).
    """
    _libc.signal(signum, None)


def loopback_up() -> None:
    """Set IFF_UP on ``lo`` in the current network namespace, as runc does for ``lo``."""
    fd = _check(_libc.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket")
    try:
        ifreq = ctypes.create_string_buffer(b"lo", _IFREQ_SIZE)
        _check(_libc.ioctl(fd, SIOCGIFFLAGS, ifreq), "SIOCGIFFLAGS lo")
        flags = int.from_bytes(ifreq.raw[16:18], "little") | IFF_UP
        ctypes.memmove(ctypes.addressof(ifreq) + 16, flags.to_bytes(2, "little"), 2)
        _check(_libc.ioctl(fd, SIOCSIFFLAGS, ifreq), "SIOCSIFFLAGS lo")
    finally:
        os.close(fd)


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_table() -> list[tuple[str, str, str]]:
    """This process's mounts as (mount point, fstype, super options), from mountinfo."""
    rows = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            fstype, _source, super_opts = (right.split() + ["", "", ""])[:3]
            rows.append((_unescape_mountinfo(fields[4]), fstype,
                         _unescape_mountinfo(super_opts)))
    return rows


def mounts_under(path: str | os.PathLike) -> list[str]:
    """Mount points at or below ``path`` (deepest last in mount order)."""
    base = os.path.abspath(path)
    return [mp for mp, _, _ in mount_table()
            if mp == base or mp.startswith(base.rstrip("/") + "/")]
