"""The container runtime's host side: start one process in new namespaces.

This is the part runc plays under dockerd/containerd.  ``start`` is ``runc create`` +
``runc start`` folded into one call: it forks the children of ``container_init``
(new mount, UTS, IPC, network and PID namespaces, a fresh /proc, a minimal /dev,
read-only /sys, pivot_root, hostname, loopback up, cgroups, user, then execve) and
returns a ``ContainerProcess`` to wait on and signal.  The container's stdout and
stderr reach ``log_path`` as ``launcher.logs`` records, and ``-u`` names are looked
up in the image's /etc/passwd (``launcher.usernames``) before the fork.  The "start" phase ends when execve has
succeeded, detected the way runc (and Python's subprocess) do it: an O_CLOEXEC pipe
reaches EOF when exec closes it.  The overlay rootfs it runs on (overlay2's snapshot
for ``docker create``) is ``launcher.rootfs``, re-exported here.

Process tree (the daemon is multi-threaded, so the forked children only use os and
ctypes calls prepared before the fork, and never log):

    daemon thread --fork--> waiter (host ns, like containerd-shim: relays exit status)
                              --fork--> init (PID 1 of the new PID namespace) --exec-->
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

from launcher import capabilities as caps
from launcher.container_init import InitSpec, exit_code, waiter
from launcher.rootfs import mount_rootfs, unmount_rootfs
from launcher.usernames import UserError, resolve

__all__ = ["ContainerProcess", "StartError", "mount_rootfs", "start", "unmount_rootfs"]

log = logging.getLogger(__name__)

_FORK_LOCK = threading.Lock()  # no other start() leaks our pipe ends into its fork


class StartError(Exception):
    """The container process could not be exec'd; ``exit_code`` is Docker's
    (127 not found, 126 not executable, 1 other runtime failure)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ContainerProcess:
    """A started container: ``pid`` is the waiter (host pid), ``init_pid`` the host
    pid of the container's PID 1; times are ``time.monotonic()`` seconds."""

    def __init__(self, pid: int, init_pid: int, pidfd: int | None,
                 start_monotonic: float, exec_monotonic: float) -> None:
        self.pid = pid
        self.init_pid = init_pid
        self.start_monotonic = start_monotonic
        self.exec_monotonic = exec_monotonic
        self._pidfd = pidfd  # race-free signalling: the pid may be reused after exit
        self._status: int | None = None
        self._wait_lock = threading.Lock()
        self._pidfd_lock = threading.Lock()

    def _reaped(self, status: int) -> int:
        self._status = exit_code(status)
        with self._pidfd_lock:
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        return self._status

    def wait(self) -> int:
        """Block until the container exits; its status 0-255 (cached, thread-safe)."""
        with self._wait_lock:
            if self._status is None:
                _, status = os.waitpid(self.pid, 0)
                self._reaped(status)
            return self._status

    def poll(self) -> int | None:
        """The exit status if the container has exited, else None."""
        if self._status is not None or not self._wait_lock.acquire(blocking=False):
            return self._status  # a thread blocked in wait() will reap it
        try:
            if self._status is None:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self._reaped(status)
            return self._status
        finally:
            self._wait_lock.release()

    def kill(self, signum: int = signal.SIGKILL) -> None:
        """Send ``signum`` to the container's PID 1 (as ``docker kill`` does through
        runc).  Like any PID 1, it ignores signals it has no handler for, except
        SIGKILL and SIGSTOP.  No-op once the container has exited."""
        with self._pidfd_lock:
            if self._pidfd is not None:
                try:
                    signal.pidfd_send_signal(self._pidfd, signum)
                except ProcessLookupError:
                    pass


def _exec_user(rootfs: Path, user: str, env: list[str]):
    """(uid, gid, groups) and the environment with HOME, as runc sets them up."""
    try:
        found = resolve(Path(rootfs), user)
    except UserError as exc:
        raise StartError(str(exc), 1) from None
    if not any(e.startswith("HOME=") for e in env):
        env = list(env) + [f"HOME={found.home}"]
    return (found.uid, found.gid, found.groups), env


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _open_init_pidfd(init_pid: int, waiter_pid: int) -> int | None:
    """A pidfd for the container's PID 1, or None if it has already exited.

    A pid is only a name; checking, after opening, that the process's parent is
    our unreaped waiter proves the pidfd refers to our child and not a reuse.
    """
    try:
        pidfd = os.pidfd_open(init_pid)
    except ProcessLookupError:
        return None
    try:
        with open(f"/proc/{init_pid}/stat", "rb") as f:
            ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        ppid = -1
    if ppid != waiter_pid:
        os.close(pidfd)
        return None
    return pidfd


def start(rootfs: Path, argv: list[str], env: list[str], cwd: str = "/",
          hostname: str = "", user: str = "", log_path: Path | None = None,
          cgroup_procs: list[Path] = (),
          capabilities: int = caps.DEFAULT_MASK) -> ContainerProcess:
    """Run ``argv`` in new namespaces on ``rootfs``; return once execve succeeded.

    stdout and stderr are appended to ``log_path`` as log records (dropped if
    None), stdin is /dev/null; the process joins the cgroups whose
    ``cgroup.procs`` files are given; it keeps the ``capabilities`` (a mask) that
    this process has too.  Raises ``StartError`` with runc's message
    if exec failed, after reaping every process it made.
    """
    start_s = time.monotonic()
    if not argv:
        raise StartError("no command specified", 1)
    ids, env = _exec_user(rootfs, user, env)
    to_close: list[int] = []  # the children's fds: the daemon drops its copies
    readers: list[int] = []
    try:
        null_fd = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        to_close.append(null_fd)
        log_fd = None
        if log_path is not None:
            log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND
                             | os.O_CLOEXEC, 0o640)
            to_close.append(log_fd)
        cgroup_fds = []
        for path in cgroup_procs:
            cgroup_fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
            to_close.append(cgroup_fds[-1])
        spec = InitSpec(os.fsencode(os.path.abspath(rootfs)), list(argv), list(env),
                        cwd or "/", hostname, ids, tuple(cgroup_fds),
                        capabilities & caps.permitted_mask())
        with _FORK_LOCK:
            for _ in range(2):
                r, w = os.pipe2(os.O_CLOEXEC)
                readers.append(r)
                to_close.append(w)
            (exec_r, err_r), (exec_w, err_w) = readers, to_close[-2:]
            pid = os.fork()
            if pid == 0:
                waiter(spec, null_fd, log_fd, exec_w, err_w)  # never returns
    except BaseException:
        for fd in readers:
            os.close(fd)
        raise
    finally:
        for fd in to_close:
            os.close(fd)
    try:
        _read_all(exec_r)  # EOF: exec succeeded, or every holder died
        exec_s = time.monotonic()
        report = _read_all(err_r).decode(errors="replace")
    except BaseException:
        os.kill(pid, signal.SIGKILL)  # init follows by PDEATHSIG
        os.waitpid(pid, 0)
        raise
    finally:
        for fd in readers:
            os.close(fd)
    init_pid, error = None, ""
    for line in report.splitlines():
        kind, _, value = line.partition(" ")
        if kind == "pid":
            init_pid = int(value)
        elif kind == "error":
            error = value
    if error or init_pid is None:
        _, status = os.waitpid(pid, 0)
        code = exit_code(status)
        raise StartError(error or f"runtime failed (status {code})", code or 1)
    process = ContainerProcess(pid, init_pid, _open_init_pidfd(init_pid, pid),
                               start_s, exec_s)
    log.debug("started %s as pid %d (init %d) in %.2f ms", argv[0], pid, init_pid,
              (exec_s - start_s) * 1e3)
    return process
