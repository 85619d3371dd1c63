"""What the daemon puts right at start-up after a crash: dockerd's ``restore()``.

A daemon killed with SIGKILL leaves its containers behind as they were: the
records say "running", the shim-like waiters and the containers' processes may
still run (they are in a session of their own, like containerd-shims), their
overlays are still mounted and their cgroups still exist.  dockerd without
live-restore puts this right when it starts again, before it serves anything,
and so does ``restore_containers``:

* a container whose record says running (or created, if a `start` was cut short
  after the fork) has its surviving processes killed and is marked exited with
  code 255, as dockerd reports a container it lost track of;
* its leftover overlay mount is unmounted (the writable layer is kept until
  `docker rm`, as dockerd keeps it) and its cgroup removed;
* a container with AutoRemove (`docker run --rm`) that is now exited is removed;
* a container dir without a readable record (a `create` the crash interrupted)
  is unmounted and deleted: no client ever got its id;
* a container that was only created keeps its rootfs (mounted again if needed),
  so `docker start` still works.

Surviving processes are found the way ``fuser`` would find them: the waiter
holds the container's log file open for as long as any process of the container
lives, and PID 1 of the container is the waiter's child.  A pid read from a
record could by now name some other process; an open file of this container
cannot.  Killing PID 1 of a PID namespace kills every process in it.
"""
from __future__ import annotations

import errno
import logging
import os
import select
import signal
import time
from pathlib import Path
from typing import Callable

from launcher import linux
from launcher.cgroups import Cgroup, CgroupError, CgroupManager
from launcher.container_records import RecordError, read_record
from launcher.containers import Container
from launcher.rootfs import mount_rootfs, unmount_rootfs
from launcher.store import Store

log = logging.getLogger("docksim.daemon")

LOST_EXIT_CODE = 255  # dockerd's exit code for a container whose exit it missed
KILL_WAIT_S = 5.0


def open_file_holders(paths: set[str]) -> dict[str, set[int]]:
    """For each path, the pids of processes that hold it open (from /proc/*/fd)."""
    found: dict[str, set[int]] = {}
    if not paths:
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fd_dir = f"/proc/{entry.name}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or not ours to look at
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target in paths:
                found.setdefault(target, set()).add(int(entry.name))
    return found


def children_of(parents: set[int]) -> set[int]:
    """Pids whose parent is one of ``parents`` (one pass over /proc/*/stat)."""
    kids: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid in parents:
            kids.add(int(entry.name))
    return kids


def kill_and_wait(pids: set[int], timeout_s: float = KILL_WAIT_S) -> int:
    """SIGKILL each process through a pidfd and wait until it has exited; how
    many were killed.  A pidfd names one process, so a pid reused meanwhile is
    never hit."""
    pidfds = []
    for pid in pids:
        try:
            pidfds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            continue
    killed = 0
    try:
        for fd in pidfds:
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout_s
        for fd in pidfds:  # a pidfd becomes readable when its process has exited
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                log.warning("recovery: a process did not die within %.0f s of SIGKILL", timeout_s)
    finally:
        for fd in pidfds:
            os.close(fd)
    return killed


def unmount_all(container_dir: Path) -> int:
    """Unmount whatever is mounted at or below the container's rootfs (lazily when
    busy); keeps the writable layer.  Returns the number of mounts removed."""
    rootfs = Path(container_dir).resolve() / "rootfs"
    points = linux.mounts_under(rootfs)
    for point in reversed(points):
        try:
            linux.umount2(point)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                linux.umount2(point, linux.MNT_DETACH)
            elif exc.errno != errno.EINVAL:
                raise
    return len(points)


def _remove_cgroup(cgroups: CgroupManager, container_id: str) -> bool:
    """Remove the container's cgroup if a crash left it; True if one was there."""
    if cgroups.version is None:
        return False
    dirs = {name: parent / container_id for name, parent in cgroups.roots.items()}
    present = any(d.is_dir() for d in dirs.values())
    if present:
        try:
            Cgroup(cgroups.version, dirs).remove()
        except CgroupError:
            log.exception("recovery: container %s", container_id[:12])
    return present


def restore_containers(store: Store, cgroups: CgroupManager,
                       save: Callable[[Container], None]) -> list[Container]:
    """Every container of the store, made consistent as the module docstring says;
    ``save`` writes a changed record.  Logs one line per container it changed; a
    container dir it cannot put right is logged and left alone, so that one bad
    dir does not keep the daemon from starting."""
    top = store.root / "containers"
    dirs = sorted(p for p in top.iterdir() if p.is_dir())
    holders = open_file_holders({os.fspath(d / "container.log") for d in dirs})
    restored: list[Container] = []
    figures = {"killed": 0, "unmounted": 0, "cgroups": 0, "removed": 0}
    for directory in dirs:
        if not store.is_container_id(directory.name):
            log.warning("recovery: %s is not a container dir: left as it is", directory)
            continue
        waiters = holders.get(os.fspath(directory / "container.log"), set())
        try:
            container = _restore_one(store, cgroups, save, directory, waiters, figures)
        except Exception:
            log.exception("recovery: container dir %s left as it is", directory.name[:12])
            continue
        if container is not None:
            restored.append(container)
    if any(figures.values()):
        log.info("recovery: %d containers kept; killed %d processes, unmounted %d overlays, "
                 "removed %d cgroups and %d containers", len(restored), figures["killed"],
                 figures["unmounted"], figures["cgroups"], figures["removed"])
    return restored


def _restore_one(store: Store, cgroups: CgroupManager, save: Callable[[Container], None],
                 directory: Path, waiters: set[int], figures: dict[str, int]) -> Container | None:
    """One container dir put right; the container to keep, or None if it was removed."""
    if waiters:
        figures["killed"] += kill_and_wait(waiters | children_of(waiters))
    try:
        container = read_record(directory)
    except RecordError as exc:
        figures["unmounted"] += unmount_all(directory)
        figures["cgroups"] += _remove_cgroup(cgroups, directory.name)
        _delete(store, directory.name)
        figures["removed"] += 1
        log.info("recovery: removed container dir %s: %s", directory.name[:12], exc)
        return None
    was = container.status
    if was == "running" or waiters:
        container.status, container.exit_code = "exited", LOST_EXIT_CODE
        container.finished_s = time.time()
        container.error = "the daemon stopped while the container ran"
        container.exited.set()
    if container.status == "created":
        _remount(store, container)
    else:
        figures["unmounted"] += unmount_all(directory)
    figures["cgroups"] += _remove_cgroup(cgroups, container.id)
    if container.status == "exited" and container.host_config.get("AutoRemove"):
        _delete(store, container.id)  # its removal was due, or under way, at the crash
        figures["removed"] += 1
        log.info("recovery: container %s was %s: removed (AutoRemove)", container.id[:12], was)
        return None
    if container.status != was:
        save(container)
        log.info("recovery: container %s was %s: marked exited (%d)",
                 container.id[:12], was, LOST_EXIT_CODE)
    return container


def _remount(store: Store, container: Container) -> None:
    """A created container's rootfs, mounted again if the crash (or a reboot) lost it."""
    try:
        mount_rootfs([store.layer_dir(d) for d in container.image["diff_ids"]], container.dir)
    except (OSError, ValueError) as exc:  # e.g. a layer that `check --repair` removed
        log.warning("recovery: container %s: cannot mount its rootfs: %s", container.id[:12], exc)


def _delete(store: Store, container_id: str) -> None:
    unmount_rootfs(store.root / "containers" / container_id)
    store.remove_container_dir(container_id)
