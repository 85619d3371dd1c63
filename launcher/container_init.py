"""What runs between fork and exec: the shim-like waiter and the container's PID 1.

This is the in-container half of runc (``runc init``, with containerd-shim's job of
relaying the exit status): ``waiter`` unshares the mount, UTS, IPC, network and PID
namespaces and forks PID 1, which mounts a fresh /proc, a minimal /dev and a
read-only /sys, pivots into the rootfs, masks kernel interfaces as Docker's default
spec does, sets hostname, loopback, working directory, the capabilities (Docker's
default set, ``launcher.capabilities``), user and stdio, resolves
argv[0] like Go's ``exec.LookPath`` and execs it.  Just before it gives up root,
PID 1 writes itself into the container's cgroups through files the daemon opened
(after pivot_root the host's /sys/fs/cgroup is out of sight), so that the memory
the forked runtime touched before is charged to the daemon, not to the container.
The waiter also plays containerd-shim's other part and the log driver: it reads
the container's stdout and stderr pipes and appends them to the log file as
``launcher.logs`` records.

Everything here runs in a forked child of a multi-threaded daemon: only ``os`` and
the ``linux`` ctypes wrappers prepared before the fork, no logging, no imports.  The
children talk to ``runtime.start`` over two O_CLOEXEC pipes: the exec pipe, which
reaches EOF when execve succeeds, and the report pipe, which carries the lines
``pid <host pid of PID 1>`` and ``error <runc-style message>``.
"""
from __future__ import annotations

import errno
import os
import select
import signal
import stat
import time
from typing import NamedTuple

from launcher import capabilities, linux
from launcher.logs import STDERR, STDOUT, record

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
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap")  # energy counters: a power side channel
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                  "/proc/sysrq-trigger")


class InitSpec(NamedTuple):
    """The container's process, as in runc's config.json ``root`` + ``process``;
    built by the daemon before the fork, only read by the children."""
    rootfs: bytes
    argv: list[str]
    env: list[str]
    cwd: str
    hostname: str
    ids: tuple[int, int, tuple[int, ...]] | None  # (uid, gid, groups); None keeps root
    cgroup_fds: tuple[int, ...] = ()             # open cgroup.procs files to join
    capabilities: int = capabilities.DEFAULT_MASK  # the bounding, effective and permitted sets


def exit_code(status: int) -> int:
    """Docker's convention: the exit code, or 128 + signal number."""
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def _close_fds_except(keep: set[int]) -> None:
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        if low < fd:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


def _report(err_w: int, message: str) -> None:
    os.write(err_w, ("error " + message.replace("\n", " ") + "\n").encode()[:4000])


def waiter(spec: InitSpec, null_fd: int, log_fd: int | None, exec_w: int,
           err_w: int) -> None:
    """First child: new namespaces, fork PID 1, keep its output, relay its exit
    status.  Never returns: it ends in ``os._exit``."""
    try:
        os.setsid()  # like a shim: no signals from the daemon's terminal
        keep = {null_fd, exec_w, err_w, *spec.cgroup_fds}
        _close_fds_except(keep if log_fd is None else keep | {log_fd})
        linux.unshare(NAMESPACES)
        pipes = {}  # read end -> stream; empty: output goes to /dev/null
        out_w = errout_w = null_fd
        if log_fd is not None:
            (out_r, out_w), (errout_r, errout_w) = os.pipe(), os.pipe()
            pipes = {out_r: STDOUT, errout_r: STDERR}
        init_pid = os.fork()  # PID 1 in the new PID namespace
        if init_pid == 0:
            _init(spec, null_fd, (out_w, errout_w), exec_w, err_w)
        os.write(err_w, b"pid %d\n" % init_pid)  # its pid as the host sees it
        for fd in {null_fd, out_w, errout_w, exec_w, err_w, *spec.cgroup_fds}:
            os.close(fd)
        if pipes:
            _keep_output(pipes, log_fd)
        _, status = os.waitpid(init_pid, 0)
        os._exit(exit_code(status))
    except BaseException as exc:
        try:
            _report(err_w, f"runtime: {exc}")
        finally:
            os._exit(1)
    finally:
        os._exit(1)


def _keep_output(pipes: dict[int, int], log_fd: int) -> None:
    """Append what arrives on the output pipes to the log until both reach EOF,
    which is when every process of the container has exited."""
    while pipes:
        ready, _, _ = select.select(list(pipes), [], [])
        for fd in ready:
            data = os.read(fd, 65536)
            if not data:
                os.close(fd)
                del pipes[fd]
                continue
            try:
                os.write(log_fd, record(pipes[fd], data, time.time_ns()))
            except OSError:
                pass  # a full disk loses output but must not block the container


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
    # nodev like the rootfs; the host's nodes bound below keep their own mounts' flags
    linux.mount("tmpfs", dev, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_STRICTATIME,
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
            # keep the flags the mount already has: in a user namespace (rootless)
            # nosuid/nodev/noexec are locked and a remount that drops them fails
            linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC | linux.MS_REMOUNT
                        | linux.MS_RDONLY | _locked_flags(path))


def _locked_flags(path: str) -> int:
    flags = os.statvfs(path).f_flag
    return sum(ms for st, ms in ((os.ST_NOSUID, linux.MS_NOSUID), (os.ST_NODEV, linux.MS_NODEV),
                                 (os.ST_NOEXEC, linux.MS_NOEXEC)) if flags & st)


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


def _init(spec: InitSpec, null_fd: int, out_fds: tuple[int, int], exec_w: int,
          err_w: int) -> None:
    """Second child, PID 1 of the container: set up the world, then execve."""
    rootfs, argv, env_list, cwd, hostname, ids, cgroup_fds, caps = spec
    step, code = "setup", 1
    try:
        linux.set_parent_death_signal(signal.SIGKILL)  # the waiter died: so do we
        step = "mounts"
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)
        # CAP_MKNOD is in Docker's default set, and Docker keeps the nodes it makes
        # useless with the devices cgroup.  docksim gives a container without
        # limits no cgroup, so its writable file systems are nodev instead: a node
        # made with mknod (of the host's disk, say) cannot be opened.
        linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_NODEV
                    | _locked_flags(rootfs))
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
        step = "cgroup"
        for fd in cgroup_fds:
            os.write(fd, b"0")  # "0" is the writer itself, whatever its pid namespace
        step = "capabilities"
        capabilities.apply_bounding(caps)  # needs CAP_SETPCAP, which apply_sets may drop
        step = "user"
        if ids is not None:
            try:
                os.setgroups(list(ids[2]))
            except PermissionError:  # a rootless user namespace denies setgroups
                if ids[2]:
                    raise
            os.setgid(ids[1])
            os.setuid(ids[0])
        step = "capabilities"
        capabilities.apply_sets(caps)  # after setuid, which a dropped SETUID would forbid
        step = "stdio"
        os.dup2(null_fd, 0)
        os.dup2(out_fds[0], 1)
        os.dup2(out_fds[1], 2)
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
