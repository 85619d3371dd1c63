"""One cgroup per container, on cgroup v1 or v2, detected at run time.

This is runc's cgroup manager as dockerd's `cgroupfs` driver drives it: every
container gets its own cgroup (dockerd: `docker/<id>`, docksim: `docksim/<id>`),
the limits of `docker run --memory/--pids-limit/--cpus` are written there before
the process starts, the process joins it before exec, and `docker rm` removes it.

Where the controllers live decides the version, as in runc:
* v1 (a hierarchy per controller, e.g. /sys/fs/cgroup/memory): `docksim/<id>` below
  the cgroup the daemon itself runs in (from /proc/self/cgroup), in the memory,
  pids and cpu hierarchies;
* v2 (one hierarchy whose root has cgroup.controllers): `docksim/<id>` below the
  root, because a v2 cgroup that holds processes may not pass controllers to its
  children (the "no internal processes" rule); the controllers are switched on
  for the children with cgroup.subtree_control on the way down.
A hybrid host (v1 controllers plus an empty cgroup2 mount) therefore uses v1.
"""
from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from launcher import linux

CONTROLLERS = ("memory", "pids", "cpu")
PARENT = "docksim"
MIN_MEMORY = 6 * 1024 * 1024  # dockerd refuses less: the runtime itself needs it
CPU_PERIOD_US = 100_000       # the CFS period Docker uses for --cpus
_RMDIR_TRIES = 100            # tasks of a dead container leave their cgroup within ms


class CgroupError(Exception):
    """A limit the client asked for is invalid (HTTP 400) or cannot be written."""


@dataclass(frozen=True)
class Limits:
    """The resource part of HostConfig; 0 means no limit."""
    memory: int = 0        # bytes (--memory)
    memory_swap: int = 0   # memory + swap (--memory-swap); 0: Docker's default 2 x memory; -1: no limit
    pids: int = 0          # --pids-limit
    cpu_quota_us: int = 0  # per cpu_period_us (--cpus N = N x period)
    cpu_period_us: int = CPU_PERIOD_US

    @classmethod
    def from_host_config(cls, hc: dict) -> "Limits":
        """Docker's fields and checks: Memory, MemorySwap, PidsLimit, NanoCpus or
        CpuQuota/CpuPeriod; the error texts are dockerd's."""
        memory = int(hc.get("Memory") or 0)
        if 0 < memory < MIN_MEMORY:
            raise CgroupError("Minimum memory limit allowed is 6MB")
        swap = int(hc.get("MemorySwap") or 0)
        if memory and swap > 0 and swap < memory:
            raise CgroupError("Minimum memoryswap limit should be larger than memory limit, "
                              "see usage")
        nano = int(hc.get("NanoCpus") or 0)
        quota, period = int(hc.get("CpuQuota") or 0), int(hc.get("CpuPeriod") or 0)
        if nano and (quota or period):
            raise CgroupError("Conflicting options: Nano CPUs and CPU Period cannot both be set")
        cpus = os.cpu_count() or 1
        if nano < 0 or (nano and not 10**7 <= nano <= cpus * 10**9):
            raise CgroupError(f"Range of CPUs is from 0.01 to {cpus}.00, as there are "
                              f"only {cpus} CPUs available")
        if nano:
            period = CPU_PERIOD_US
            quota = max(1000, nano * period // 10**9)  # the kernel's minimum quota is 1 ms
        pids = int(hc.get("PidsLimit") or 0)
        return cls(memory, swap, max(pids, 0), max(quota, 0), period or CPU_PERIOD_US)

    def wanted(self) -> set[str]:
        return {name for name, on in (("memory", self.memory), ("pids", self.pids),
                                      ("cpu", self.cpu_quota_us)) if on}


class Cgroup:
    """A container's cgroup: one directory per hierarchy (v1) or one (v2)."""

    def __init__(self, version: int, dirs: dict[str, Path]):
        self.version = version
        self.dirs = dirs  # controller -> directory; on v2 all share one

    def procs_files(self) -> list[Path]:
        """Where the container's process writes itself before exec."""
        return [d / "cgroup.procs" for d in dict.fromkeys(self.dirs.values())]

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer ended in this cgroup."""
        memory = self.dirs.get("memory")
        if memory is None:
            return 0
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            for line in (memory / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def read(self, controller: str, name: str) -> str:
        return (self.dirs[controller] / name).read_text()

    def remove(self) -> None:
        """rmdir every directory; a cgroup is busy for a moment after its last task
        exited, so EBUSY is retried."""
        for path in dict.fromkeys(self.dirs.values()):
            for attempt in range(_RMDIR_TRIES):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or attempt == _RMDIR_TRIES - 1:
                        raise CgroupError(f"cannot remove cgroup {path}: {exc.strerror}") from None
                    time.sleep(0.01)


class CgroupManager:
    """Finds the hierarchies once (at daemon start) and makes containers' cgroups.

    ``version`` is 1, 2, or None when no usable controller is mounted or the daemon
    is rootless (no cgroups then; ``why_not`` says why, once).
    """

    def __init__(self, disabled_reason: str = ""):
        self.version: int | None = None
        self.roots: dict[str, Path] = {}  # controller -> parent directory of containers
        self.why_not = disabled_reason
        if not disabled_reason:
            self._detect()

    def _detect(self) -> None:
        v1: dict[str, Path] = {}
        v2: Path | None = None
        for point, fstype, opts in linux.mount_table():
            if fstype == "cgroup":
                for name in set(opts.split(",")) & set(CONTROLLERS):
                    v1.setdefault(name, Path(point))
            elif fstype == "cgroup2" and v2 is None:
                v2 = Path(point)
        if v1:
            own = _own_cgroups()
            for name, mount in v1.items():
                here = mount / own.get(name, "").lstrip("/")
                self.roots[name] = (here if here.is_dir() else mount) / PARENT
            self.version = 1
            return
        controllers = set()
        if v2 is not None:
            try:
                controllers = set((v2 / "cgroup.controllers").read_text().split())
            except OSError:
                pass
        if controllers & set(CONTROLLERS):
            self.version = 2
            self.roots = {name: v2 / PARENT for name in CONTROLLERS if name in controllers}
        else:
            self.why_not = "no cgroup controller (memory, pids, cpu) is mounted"

    def unsupported(self, limits: Limits) -> list[str]:
        """Docker's warnings for limits this host cannot apply (they are dropped)."""
        missing = sorted(limits.wanted() - set(self.roots))
        if missing and self.why_not:
            return [f"{', '.join(missing)} limit discarded: {self.why_not}"]
        return [f"Your kernel does not support {name} limit capabilities or the cgroup "
                f"is not mounted. Limitation discarded." for name in missing]

    def create(self, container_id: str, limits: Limits) -> Cgroup | None:
        """Make ``docksim/<id>`` and write the limits; None without cgroups, and
        None when no limit is asked for.

        dockerd puts every container in a cgroup; docksim only a limited one.
        On cgroup v1, moving a process into a cgroup (a write to cgroup.procs)
        takes the kernel's cgroup_threadgroup_rwsem for writing, which waits
        for an RCU grace period whenever no other move happened in the last few
        milliseconds: 6-16 ms here, from one container to the next.  Measured
        start times swung with it, so a container without limits skips it.
        """
        if self.version is None or not limits.wanted():
            return None
        dirs: dict[str, Path] = {}
        try:
            for name, parent in self.roots.items():
                path = parent / container_id
                if path not in dirs.values():
                    self._make(parent, path)
                dirs[name] = path
            cgroup = Cgroup(self.version, dirs)
            _write_limits(cgroup, limits)
        except BaseException:
            Cgroup(self.version, dirs).remove()
            raise
        return cgroup

    def _make(self, parent: Path, path: Path) -> None:
        if self.version == 2:  # controllers reach a child only if its parent enables them
            wanted = " ".join(f"+{n}" for n in self.roots)
            _write(parent.parent / "cgroup.subtree_control", wanted)
            parent.mkdir(exist_ok=True)
            _write(parent / "cgroup.subtree_control", wanted)
        for attempt in range(2):  # another daemon may rmdir an empty parent meanwhile
            parent.mkdir(exist_ok=True)
            try:
                path.mkdir()
                return
            except FileNotFoundError:
                if attempt:
                    raise

    def cleanup(self) -> None:
        """Remove the empty ``docksim`` parents (the daemon is exiting); a parent
        that another daemon still uses is busy and stays."""
        for parent in set(self.roots.values()):
            try:
                parent.rmdir()
            except OSError:
                pass


def _own_cgroups() -> dict[str, str]:
    """controller -> the daemon's cgroup path in that v1 hierarchy."""
    own: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(","):
                own[name] = path
    return own


def _write(path: Path, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror}") from None


def _write_limits(cgroup: Cgroup, limits: Limits) -> None:
    d = cgroup.dirs
    if limits.memory and "memory" in d:
        swap = limits.memory_swap or 2 * limits.memory  # Docker's default swap allowance
        if cgroup.version == 1:
            _write(d["memory"] / "memory.limit_in_bytes", str(limits.memory))
            if (d["memory"] / "memory.memsw.limit_in_bytes").exists():  # swap accounting on
                _write(d["memory"] / "memory.memsw.limit_in_bytes", str(swap))
        else:
            _write(d["memory"] / "memory.max", str(limits.memory))
            if (d["memory"] / "memory.swap.max").exists():
                _write(d["memory"] / "memory.swap.max",
                       "max" if swap < 0 else str(swap - limits.memory))
    if limits.pids and "pids" in d:
        _write(d["pids"] / "pids.max", str(limits.pids))
    if limits.cpu_quota_us and "cpu" in d:
        if cgroup.version == 1:
            _write(d["cpu"] / "cpu.cfs_period_us", str(limits.cpu_period_us))
            _write(d["cpu"] / "cpu.cfs_quota_us", str(limits.cpu_quota_us))
        else:
            _write(d["cpu"] / "cpu.max", f"{limits.cpu_quota_us} {limits.cpu_period_us}")
