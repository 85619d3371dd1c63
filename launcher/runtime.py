"""The container runtime: the overlay rootfs, and one process in new namespaces.

This is the part runc plays under dockerd/containerd.  ``mount_rootfs`` is overlay2's
snapshot for ``docker create``; ``start`` is ``runc create`` + ``runc start`` folded
into one call: new mount, UTS, IPC, network and PID namespaces, a fresh /proc, a
minimal /dev, read-only /sys, pivot_root, hostname, loopback up, user, then execve.
The "start" phase ends when execve has succeeded, detected the way runc (and Python's
subprocess) do it: an O_CLOEXEC pipe reaches EOF when exec closes it.

Process tree (the daemon is multi-threaded, so the forked children only use os and
ctypes calls prepared before the fork, and never log):

    daemon thread --fork--> waiter (host ns, like containerd-shim: relays exit status)
                              --fork--> init (PID 1 of the new PID namespace) --exec-->
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import stat
import threading
import time
from pathlib import Path

from launcher import linux

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAMESPACES = (linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC
              | linux.CLONE_NEWNET | linux.CLONE_NEWPID)
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
             ("ptmx", "pts/ptmx"))
# runc's default spec from `docker run`: hidden, and read-only, kernel interfaces
MASKED_PATHS = ("/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                  "/proc/sysrq-trigger")
_FORK_LOCK = threading.Lock()  # no other start() leaks our pipe ends into its fork


class StartError(Exception):
    """The container process could not be exec'd; ``exit_code`` is Docker's
    (127 not found, 126 not executable, 1 other runtime failure)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- rootfs (overlay2's snapshot) ------------------------------------------------

def mount_rootfs(lower_dirs: list[Path], container_dir: Path) -> Path:
    """Mount overlay(lower_dirs, upper) on ``container_dir/rootfs`` and return it.

    ``lower_dirs`` is bottom-first as in the image config; overlayfs wants the top
    layer first.  Already mounted: returned as is.
    """
    container_dir = Path(container_dir).resolve()
    upper, work, rootfs = (container_dir / n for n in ("upper", "work", "rootfs"))
    if os.fspath(rootfs) in linux.mounts_under(rootfs):
        return rootfs
    lowers = [os.fspath(Path(p).resolve()) for p in reversed(lower_dirs)]
    if not lowers:  # an image with no layers (FROM scratch, nothing added)
        (container_dir / "empty").mkdir(exist_ok=True)
        lowers = [os.fspath(container_dir / "empty")]
    for path in lowers + [os.fspath(upper), os.fspath(work)]:
        if any(c in path for c in ",:\\"):
            raise ValueError(f"overlay cannot take path {path!r}")
    data = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    if len(data) >= 4096:  # mount(2) copies at most one page of options
        raise OSError(errno.E2BIG, f"{len(lowers)} layers: overlay options too long")
    for d in (upper, work, rootfs):
        d.mkdir(exist_ok=True)
    try:
        linux.mount("overlay", rootfs, "overlay", 0, data)
    except BaseException:
        _remove_rootfs_dirs(container_dir)
        raise
    return rootfs


def unmount_rootfs(container_dir: Path) -> None:
    """Unmount the rootfs (lazily if busy, as dockerd does) and delete upper/work/
    rootfs.  Safe to call again, or on a container that was never mounted."""
    container_dir = Path(container_dir).resolve()
    rootfs = container_dir / "rootfs"
    for mount_point in reversed(linux.mounts_under(rootfs)):
        try:
            linux.umount2(mount_point)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                linux.umount2(mount_point, linux.MNT_DETACH)
            elif exc.errno != errno.EINVAL:  # EINVAL: already gone
                raise
    left = linux.mounts_under(rootfs)
    if left:  # never delete through a mount: it would delete image content
        raise OSError(errno.EBUSY, f"still mounted: {left}")
    _remove_rootfs_dirs(container_dir)


def _remove_rootfs_dirs(container_dir: Path) -> None:
    for name in ("rootfs", "upper", "work", "empty"):
        shutil.rmtree(container_dir / name, ignore_errors=True)


# --- the process -----------------------------------------------------------------

def _exit_code(status: int) -> int:
    """Docker's convention: the exit code, or 128 + signal number."""
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


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
        self._status = _exit_code(status)
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


def _parse_user(user: str) -> tuple[int, int] | None:
    if not user:
        return None
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise StartError(f"unable to find user {user}: only numeric uid[:gid] "
                         "is supported", 1)
    return int(uid), int(gid or 0)


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
          hostname: str = "", user: str = "",
          log_path: Path | None = None) -> ContainerProcess:
    """Run ``argv`` in new namespaces on ``rootfs``; return once execve succeeded.

    stdout and stderr go to ``log_path`` (appended; /dev/null if None), stdin is
    /dev/null.  Raises ``StartError`` with runc's message if exec failed, after
    reaping every process it made.
    """
    start_s = time.monotonic()
    if not argv:
        raise StartError("no command specified", 1)
    ids = _parse_user(user)
    spec = (os.fsencode(os.path.abspath(rootfs)), list(argv), list(env), cwd or "/",
            hostname, ids)
    to_close: list[int] = []  # the children's fds: the daemon drops its copies
    readers: list[int] = []
    try:
        null_fd = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        to_close.append(null_fd)
        out_fd = null_fd
        if log_path is not None:
            out_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND
                             | os.O_CLOEXEC, 0o640)
            to_close.append(out_fd)
        with _FORK_LOCK:
            for _ in range(2):
                r, w = os.pipe2(os.O_CLOEXEC)
                readers.append(r)
                to_close.append(w)
            (exec_r, err_r), (exec_w, err_w) = readers, to_close[-2:]
            pid = os.fork()
            if pid == 0:
                _waiter(spec, null_fd, out_fd, exec_w, err_w)  # never returns
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
        code = _exit_code(status)
        raise StartError(error or f"runtime failed (status {code})", code or 1)
    process = ContainerProcess(pid, init_pid, _open_init_pidfd(init_pid, pid),
                               start_s, exec_s)
    log.debug("started %s as pid %d (init %d) in %.2f ms", argv[0], pid, init_pid,
              (exec_s - start_s) * 1e3)
    return process


# --- in the forked children: os and ctypes only, no logging, no imports ------------

def _close_fds_except(keep: set[int]) -> None:
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        if low < fd:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


def _report(err_w: int, message: str) -> None:
    os.write(err_w, ("error " + message.replace("\n", " ") + "\n").encode()[:4000])


def _waiter(spec, null_fd: int, out_fd: int, exec_w: int, err_w: int) -> None:
    """First child: new namespaces, fork PID 1, relay its exit status."""
    try:
        os.setsid()  # like a shim: no signals from the daemon's terminal
        _close_fds_except({null_fd, out_fd, exec_w, err_w})
        linux.unshare(NAMESPACES)
        init_pid = os.fork()  # PID 1 in the new PID namespace
        if init_pid == 0:
            _init(spec, null_fd, out_fd, exec_w, err_w)
        os.write(err_w, b"pid %d\n" % init_pid)  # its pid as the host sees it
        for fd in {null_fd, out_fd, exec_w, err_w}:
            os.close(fd)
        _, status = os.waitpid(init_pid, 0)
        os._exit(_exit_code(status))
    except BaseException as exc:
        try:
            _report(err_w, f"runtime: {exc}")
        finally:
            os._exit(1)
    finally:
        os._exit(1)


def _ensure_dir(path: bytes) -> None:
    """A mount point that is a real directory; a symlink (which would make the
    mount land outside the rootfs) is refused, a missing one created as runc does."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.mkdir(path, 0o755)
        return
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, f"mount point {os.fsdecode(path)} is not a directory")


def _mount_kernel_fs(rootfs: bytes) -> None:
    """/proc, /dev (tmpfs + host device binds + devpts + shm + mqueue), /sys ro."""
    nosuid_nodev_noexec = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    proc, dev, sys = rootfs + b"/proc", rootfs + b"/dev", rootfs + b"/sys"
    for d in (proc, dev, sys):
        _ensure_dir(d)
    linux.mount("proc", proc, "proc", nosuid_nodev_noexec)
    linux.mount("tmpfs", dev, "tmpfs", linux.MS_NOSUID | linux.MS_STRICTATIME,
                "mode=755,size=65536k")
    for name in DEV_NODES:
        node = dev + b"/" + name.encode()
        os.close(os.open(node, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        linux.mount("/dev/" + name, node, None, linux.MS_BIND)
    for name, target in DEV_LINKS:
        os.symlink(target, dev + b"/" + name.encode())
    for name in (b"pts", b"shm", b"mqueue"):
        os.mkdir(dev + b"/" + name, 0o755)
    linux.mount("devpts", dev + b"/pts", "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620")
    linux.mount("shm", dev + b"/shm", "tmpfs", nosuid_nodev_noexec,
                "mode=1777,size=65536k")
    linux.mount("mqueue", dev + b"/mqueue", "mqueue", nosuid_nodev_noexec)
    linux.mount("sysfs", sys, "sysfs", nosuid_nodev_noexec | linux.MS_RDONLY)


def _mask_kernel_paths() -> None:
    for path in MASKED_PATHS:
        if os.path.isdir(path):
            linux.mount("tmpfs", path, "tmpfs", linux.MS_RDONLY)
        elif os.path.exists(path):
            linux.mount("/dev/null", path, None, linux.MS_BIND)
    for path in READONLY_PATHS:
        if os.path.exists(path):
            linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC)
            linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC
                        | linux.MS_REMOUNT | linux.MS_RDONLY)


def _lookup(name: str, env: dict[str, str]) -> tuple[str | None, int, str]:
    """Resolve argv[0] like Go's exec.LookPath in runc: (path, code, error)."""
    if "/" in name:
        try:
            st = os.stat(name)
        except OSError as exc:
            return None, 127, f'exec: "{name}": stat {name}: {exc.strerror.lower()}'
        if not stat.S_ISREG(st.st_mode):
            return None, 126, f'exec: "{name}": permission denied'
        return name, 0, ""
    for directory in env.get("PATH", DEFAULT_PATH).split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return candidate, 0, ""
    return None, 127, f'exec: "{name}": executable file not found in $PATH'


def _init(spec, null_fd: int, out_fd: int, exec_w: int, err_w: int) -> None:
    """Second child, PID 1 of the container: set up the world, then execve."""
    rootfs, argv, env_list, cwd, hostname, ids = spec
    step, code = "setup", 1
    try:
        linux.set_parent_death_signal(signal.SIGKILL)  # the waiter died: so do we
        step = "mounts"
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)
        _mount_kernel_fs(rootfs)
        step = "pivot_root"
        os.chdir(rootfs)
        linux.pivot_root(".", ".")
        linux.umount2(".", linux.MNT_DETACH)  # the old root, stacked on top
        os.chdir("/")
        _mask_kernel_paths()
        step = "hostname"
        if hostname:
            linux.sethostname(hostname)
        step = "network"
        linux.loopback_up()
        step = "cwd"
        try:
            os.chdir(cwd)
        except FileNotFoundError:
            os.makedirs(cwd, 0o755)  # runc creates a missing working directory
            os.chdir(cwd)
        step = "user"
        if ids is not None:
            os.setgroups([])
            os.setgid(ids[1])
            os.setuid(ids[0])
        step = "stdio"
        os.dup2(null_fd, 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        _close_fds_except({exec_w, err_w})  # both O_CLOEXEC: they close at exec
        for signum in (signal.SIGPIPE, signal.SIGXFSZ):
            linux.reset_signal(signum)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())  # a daemon thread's mask
        env = dict(e.partition("=")[::2] for e in env_list)
        path, code, error = _lookup(argv[0], env)
        if path is None:
            _report(err_w, error or f'exec: "{argv[0]}": permission denied')
            os._exit(code or 126)
        if ids is not None:  # a credential change cleared it
            linux.set_parent_death_signal(signal.SIGKILL)
        step, code = "exec", 126
        os.execve(path, argv, env)
    except BaseException as exc:
        if step == "exec" and isinstance(exc, OSError) and exc.strerror:
            message = f'exec: "{argv[0]}": {exc.strerror.lower()}'
            code = 127 if exc.errno == errno.ENOENT else 126
        else:
            message = f"{step}: {exc}"
        try:
            _report(err_w, message)
        finally:
            os._exit(code)
    finally:
        os._exit(code)
