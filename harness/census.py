"""A leak census of one running docksim daemon, read from /proc and /sys.

A long-lived dockerd must come back to where it was after every `docker run
--rm`: the container's overlay unmounted, its cgroup removed, its shim reaped,
its namespaces gone with its last process, the connections and pidfds the
daemon opened for it closed, its scratch files deleted.  ``take`` counts all of
that for a daemon process; ``leaks`` says what a later census holds that an
earlier one did not, and ``settle`` waits for the daemon's asynchronous
clean-up (a reaping thread, a connection thread exiting) before believing a
difference.

What is counted, and where it is read:
* ``fds``: the daemon's open files, /proc/PID/fd (with their targets);
* ``rss_kib``, ``threads``: /proc/PID/status (VmRSS, Threads);
* ``processes``: every descendant of the daemon (shims, containers' PID 1s), by
  walking the parent links of /proc/*/stat; ``zombies`` those in state Z;
* ``mounts``: mount points at or below the daemon's root dir, from the
  daemon's own /proc/PID/mountinfo (a rootless daemon has a mount namespace of
  its own);
* ``cgroups``: the container cgroups below docksim's parents, in every v1
  hierarchy (below the daemon's own cgroup and at the root) and on cgroup v2;
* ``namespaces``: the namespaces (net, mnt, pid, uts, ipc) that the daemon's
  descendants hold and the daemon itself does not;
* ``files``: entries in the store's tmp/ and containers/ dirs and in the
  daemon's TMPDIR (``soak_daemon`` gives it a private one, so whatever it would
  leave in /tmp is found there).

The cgroup parents are shared by every docksim daemon on the host; ``leaks``
can be told which container ids are the caller's so that another daemon's
containers, coming and going meanwhile, are not taken for leaks.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from launcher.cgroups import CONTROLLERS, PARENT as CGROUP_PARENT

NAMESPACE_KINDS = ("net", "mnt", "pid", "uts", "ipc")
SETTLE_POLL_S = 0.05


@dataclass(frozen=True)
class Census:
    """One look at a daemon; sets hold names that identify each item."""
    pid: int
    rss_kib: int
    threads: int
    fds: dict[int, str]            # fd number -> readlink target
    processes: frozenset[str]      # "pid comm" of every descendant
    zombies: frozenset[str]        # the same, state Z only
    mounts: frozenset[str]         # mount points at/below the daemon's root
    cgroups: frozenset[str]        # container cgroup dirs below docksim's parents
    namespaces: frozenset[str]     # "net:[4026...]" held by descendants only
    files: frozenset[str]          # scratch and per-container entries
    taken_s: float = field(default_factory=time.monotonic)

    def figures(self) -> dict[str, int]:
        """Counts, for tables and test output."""
        return {"rss_kib": self.rss_kib, "threads": self.threads, "fds": len(self.fds),
                "processes": len(self.processes), "zombies": len(self.zombies),
                "mounts": len(self.mounts), "cgroups": len(self.cgroups),
                "namespaces": len(self.namespaces), "files": len(self.files)}


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:  # the process or file went away while we looked
        return None


def _status_field(pid: int, name: str) -> int:
    text = _read(f"/proc/{pid}/status")
    if text is None:
        raise ProcessLookupError(f"process {pid} is gone")
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return int(value.split()[0])
    return 0


def rss_kib(pid: int) -> int:
    """The resident set of ``pid`` in KiB (VmRSS, which the kernel writes as "kB")."""
    return _status_field(pid, "VmRSS")


def quick(pid: int) -> tuple[int, int, int]:
    """(RSS KiB, threads, open fds) of ``pid``: cheap enough to sample often."""
    return rss_kib(pid), _status_field(pid, "Threads"), len(os.listdir(f"/proc/{pid}/fd"))


def _open_fds(pid: int) -> dict[int, str]:
    out = {}
    base = f"/proc/{pid}/fd"
    for name in os.listdir(base):
        try:
            out[int(name)] = os.readlink(f"{base}/{name}")
        except OSError:
            pass  # closed between listdir and readlink
    return out


def _process_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, state, comm) of every process on the host."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _read(f"/proc/{name}/stat")
        if not stat:
            continue
        # comm may hold spaces and parentheses: it ends at the last ')'
        head, _, rest = stat.rpartition(")")
        fields = rest.split()
        table[int(name)] = (int(fields[1]), fields[0], head.partition("(")[2])
    return table


def descendants(pid: int, table: dict[int, tuple[int, str, str]] | None = None) -> list[int]:
    """Every process below ``pid`` in the process tree."""
    table = _process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for child, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(child)
    found, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return sorted(found)


def _unescape(field_text: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo
    return (field_text.replace("\\040", " ").replace("\\011", "\t")
            .replace("\\012", "\n").replace("\\134", "\\"))


def mounts_below(pid: int, root: Path) -> frozenset[str]:
    """Mount points at or below ``root`` in the mount namespace of ``pid``."""
    base = os.path.realpath(root)
    text = _read(f"/proc/{pid}/mountinfo") or ""
    points = (_unescape(line.split()[4]) for line in text.splitlines() if line)
    return frozenset(p for p in points if p == base or p.startswith(base.rstrip("/") + "/"))


def cgroup_parents(pid: int) -> list[Path]:
    """Where docksim puts container cgroups, as seen for the daemon ``pid``: in
    each v1 hierarchy of memory, pids or cpu below the daemon's own cgroup and
    at the hierarchy's root (where the daemon falls back), and at the root of
    cgroup v2."""
    own: dict[str, str] = {}
    for line in (_read(f"/proc/{pid}/cgroup") or "").splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(",") if names else [""]:
            own[name] = path
    parents: list[Path] = []
    for line in (_read("/proc/self/mountinfo") or "").splitlines():
        left, _, right = line.partition(" - ")
        fstype, _, rest = right.partition(" ")
        point = Path(_unescape(left.split()[4]))
        if fstype == "cgroup":
            names = set(rest.split()[-1].split(",")) & set(CONTROLLERS) if rest.split() else set()
            if not names:
                continue  # a hierarchy the daemon does not use (name=systemd, ...)
            paths = {own.get(n, "") for n in names} | {""}
        elif fstype == "cgroup2":
            paths = {""}
        else:
            continue
        for sub in sorted(paths):
            parent = point / sub.lstrip("/") / CGROUP_PARENT
            if parent not in parents:
                parents.append(parent)
    return parents


def container_cgroups(pid: int) -> frozenset[str]:
    out = set()
    for parent in cgroup_parents(pid):
        try:
            out.update(str(d) for d in parent.iterdir() if d.is_dir())
        except OSError:  # no such parent (yet): no containers with limits there
            pass
    return frozenset(out)


def _namespaces(pid: int) -> set[str]:
    held = set()
    for kind in NAMESPACE_KINDS:
        try:
            held.add(os.readlink(f"/proc/{pid}/ns/{kind}"))
        except OSError:
            pass
    return held


def _entries(dirs: Iterable[Path]) -> frozenset[str]:
    out = set()
    for d in dirs:
        try:
            out.update(str(p) for p in Path(d).iterdir())
        except FileNotFoundError:
            pass
    return frozenset(out)


def take(pid: int, root: Path, tmp_dirs: Iterable[Path] = ()) -> Census:
    """A census of the daemon ``pid`` whose store is ``root``; ``tmp_dirs`` are
    further scratch dirs of its own (its TMPDIR)."""
    root = Path(root)
    table = _process_table()
    below = [p for p in descendants(pid, table) if p in table]
    processes = frozenset(f"{p} {table[p][2]}" for p in below)
    zombies = frozenset(f"{p} {table[p][2]}" for p in below if table[p][1] == "Z")
    own_ns = _namespaces(pid)
    held: set[str] = set()
    for p in below:
        held |= _namespaces(p)
    return Census(pid=pid, rss_kib=rss_kib(pid),
                  threads=_status_field(pid, "Threads"), fds=_open_fds(pid),
                  processes=processes, zombies=zombies, mounts=mounts_below(pid, root),
                  cgroups=container_cgroups(pid), namespaces=frozenset(held - own_ns),
                  files=_entries([root / "tmp", root / "containers", *tmp_dirs]))


def leaks(before: Census, after: Census, ours: set[str] | None = None) -> dict[str, list[str]]:
    """What ``after`` holds that ``before`` did not, per kind; empty when clean.

    fds count as leaked when there are more of them (numbers are reused, so the
    targets of the new numbers are listed); threads likewise.  With ``ours``
    (container ids), a new cgroup counts only if it is named after one of them:
    the parents are shared with any other docksim daemon on the host.
    """
    found: dict[str, list[str]] = {}
    if len(after.fds) > len(before.fds):
        new = sorted(f"fd {n} -> {t}" for n, t in after.fds.items() if before.fds.get(n) != t)
        found["fds"] = [f"{len(after.fds) - len(before.fds)} more open"] + new
    if after.threads > before.threads:
        found["threads"] = [f"{after.threads - before.threads} more ({after.threads})"]
    for kind in ("processes", "zombies", "mounts", "cgroups", "namespaces", "files"):
        new = getattr(after, kind) - getattr(before, kind)
        if kind == "cgroups" and ours is not None:
            new = {c for c in new if Path(c).name in ours}
        if new:
            found[kind] = sorted(new)
    return found


def settle(census: Callable[[], Census], before: Census, timeout_s: float = 10.0,
           ours: set[str] | None = None) -> tuple[Census, dict[str, list[str]]]:
    """Take censuses until nothing leaks against ``before`` or ``timeout_s`` has
    passed; the last census and what it still holds (a leak stays, clean-up in
    flight does not)."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = census()
        found = leaks(before, now, ours)
        if not found or time.monotonic() >= deadline:
            return now, found
        time.sleep(SETTLE_POLL_S)


def quiet(census: Callable[[], Census], timeout_s: float = 5.0, still_s: float = 0.2) -> Census:
    """A census once threads and fds have not changed for ``still_s`` (a client
    that just hung up leaves its connection thread running for a moment)."""
    deadline = time.monotonic() + timeout_s
    last = census()
    while True:
        time.sleep(still_s)
        now = census()
        if (now.threads, len(now.fds)) == (last.threads, len(last.fds)) or time.monotonic() > deadline:
            return now
        last = now
