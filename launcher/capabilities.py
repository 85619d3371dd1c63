"""Linux capabilities of a container: Docker's default set, CapAdd and CapDrop.

Root in a container is not root on the host partly because its process keeps only
a short list of capabilities.  dockerd puts Docker's default list (14 of the
kernel's 41) into the OCI spec, adjusted by `docker run --cap-add/--cap-drop`
(HostConfig ``CapAdd``/``CapDrop``), and runc applies it while it sets up the
process: the bounding set first (while it still may), then the user, then the
effective and permitted sets, with the inheritable and ambient sets empty (as
runc does since CVE-2022-24769).  Without SYS_ADMIN, NET_ADMIN, SYS_MODULE,
SYS_PTRACE, ... a container cannot mount, reconfigure the network, load kernel
modules or trace the host's processes, even as uid 0.

``mask_from_host_config`` runs in the daemon (bad names are the client's error);
``apply_bounding`` and ``apply_sets`` run in the container's PID 1 between fork
and exec, so they only use ctypes objects prepared at import time.
"""
from __future__ import annotations

import ctypes
import os

# capability(7) numbers, in order: the name of capability n is NAMES[n]
NAMES = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
         "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
         "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
         "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
         "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
         "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
         "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE")
NUMBERS = {name: number for number, name in enumerate(NAMES)}
ALL_MASK = (1 << len(NAMES)) - 1

# moby's oci/caps/defaults.go: what `docker run` grants without --cap-add
DEFAULT = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
           "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")


def mask_of(names) -> int:
    """The bit mask of capability names (known ones only)."""
    return sum(1 << NUMBERS[name] for name in set(names))


DEFAULT_MASK = mask_of(DEFAULT)  # 0xa80425fb, as CapEff shows it in `docker run`

# prctl(2) and capget/capset(2)
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAP_VERSION_3 = 0x20080522
_BOUNDING_LIMIT = 64  # above cap_last_cap, PR_CAPBSET_DROP answers EINVAL


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_libc.capget.argtypes = [ctypes.POINTER(_Header), ctypes.POINTER(_Data)]
_libc.capset.argtypes = [ctypes.POINTER(_Header), ctypes.POINTER(_Data)]
# the forked child only fills these in: it makes no ctypes objects of its own
_child_header = _Header(_CAP_VERSION_3, 0)
_child_data = (_Data * 2)()


def _name(raw) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"capability {raw!r} is not a string")
    name = raw.strip().upper()
    name = name[4:] if name.startswith("CAP_") else name
    if name != "ALL" and name not in NUMBERS:
        raise ValueError(f'unknown capability: "CAP_{name}"')
    return name


def _names(host_config: dict, key: str) -> set[str]:
    value = host_config.get(key) or []
    if not isinstance(value, list):
        raise ValueError(f"HostConfig.{key} must be a list of capability names")
    return {_name(item) for item in value}


def mask_from_host_config(host_config: dict) -> int:
    """The container's capability mask from HostConfig, by moby's rule: ``ALL`` in
    CapAdd starts from every capability, ``ALL`` in CapDrop from none, otherwise
    from the default set; then CapAdd is added and CapDrop taken away.  An unknown
    name is a ``ValueError`` naming it, as dockerd answers 400 for it."""
    if host_config.get("Privileged"):
        raise ValueError("docksim does not run privileged containers (docker run --privileged)")
    add, drop = _names(host_config, "CapAdd"), _names(host_config, "CapDrop")
    if "ALL" in add:
        return ALL_MASK & ~mask_of(drop - {"ALL"})
    if "ALL" in drop:
        return mask_of(add)
    return (DEFAULT_MASK | mask_of(add)) & ~mask_of(drop)


def permitted_mask() -> int:
    """This process's permitted set: no container can get more than its daemon
    has (a daemon in a restricted sandbox, or rootless, may lack some)."""
    header, data = _Header(_CAP_VERSION_3, 0), (_Data * 2)()
    if _libc.capget(ctypes.byref(header), data) == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"capget: {os.strerror(err)}")
    return data[0].permitted | data[1].permitted << 32


def _check(result: int, what: str) -> None:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def apply_bounding(mask: int) -> None:
    """Drop every capability outside ``mask`` from the bounding set, for good (no
    execve, not even of a setuid-root file, brings it back), and keep the
    permitted set across the coming setuid.  Needs CAP_SETPCAP: call it before
    ``apply_sets``.  Runs in the forked child."""
    for number in range(_BOUNDING_LIMIT):
        if not mask >> number & 1:
            if _libc.prctl(PR_CAPBSET_DROP, number, 0, 0, 0) == -1:
                if ctypes.get_errno() == 22:  # EINVAL: past the kernel's last capability
                    break
                _check(-1, f"prctl(PR_CAPBSET_DROP, {number})")
    _check(_libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")


def apply_sets(mask: int) -> None:
    """Effective = permitted = ``mask``, inheritable and ambient empty; after the
    user is set.  Runs in the forked child.  A process that is not uid 0 still
    loses them at execve (it has no ambient set), as under Docker."""
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0),
           "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    for i in range(2):
        word = mask >> (32 * i) & 0xFFFFFFFF
        _child_data[i].effective = _child_data[i].permitted = word
        _child_data[i].inheritable = 0
    _check(_libc.capset(_child_header, _child_data), "capset")
    _check(_libc.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0), "prctl(PR_SET_KEEPCAPS, 0)")
