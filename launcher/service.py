"""The daemon as a foreground service: `python -m launcher` and `simulate.py daemon`.

Like `dockerd`, it logs one line per request, stops cleanly on SIGTERM or Ctrl-C
(containers stopped and removed, mounts gone, socket deleted) and refuses to
start, with one line and exit status 2, when its socket is taken.

Started by a user other than root it runs rootless, the way `dockerd-rootless.sh`
runs dockerd under RootlessKit: before anything else (a user namespace can only
be entered by a single-threaded process) it unshares a user namespace in which
its own uid is mapped to root, and a mount namespace of its own.  There it may
mount overlayfs (kernel >= 5.11), unshare the containers' namespaces and own the
layer files; what it cannot do is write the host's cgroups, so no resource limits.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

from launcher import linux

log = logging.getLogger("docksim.daemon")


def enter_user_namespace() -> None:
    """Become root of a new user namespace (uid and gid mapped one to one) with a
    private mount namespace."""
    if threading.active_count() != 1 or len(os.listdir("/proc/self/task")) != 1:
        raise RuntimeError("a user namespace can only be entered by a single-threaded process")
    uid, gid = os.geteuid(), os.getegid()
    linux.unshare(linux.CLONE_NEWUSER | linux.CLONE_NEWNS)
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:  # setgroups first: gid_map needs it
            f.write(text)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)


def serve_foreground(socket_path: str, root: str, registry: str,
                     max_concurrent_downloads: int = 3, log_level: str = "INFO",
                     extract: str = "serial", retry=None, durable: bool = False,
                     max_layer_bytes: int | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT; the exit status."""
    from launcher.http import socket_in_use
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s daemon %(message)s")
    if socket_in_use(socket_path):
        print(f"docksim daemon: {socket_path} is in use: another daemon listens there",
              file=sys.stderr)
        return 2
    rootless = os.geteuid() != 0
    if rootless:
        uid = os.geteuid()
        try:
            enter_user_namespace()
        except (OSError, RuntimeError) as exc:
            print(f"docksim daemon: not root, and rootless mode failed: {exc}", file=sys.stderr)
            return 2
        log.warning("rootless mode: running as uid %d in a user namespace; no cgroups, so "
                    "--memory, --pids-limit and --cpus are ignored", uid)
    from launcher.daemon import Daemon  # imported late: nothing may run before the unshare
    from launcher.storefiles import try_lock
    Path(root).mkdir(parents=True, exist_ok=True)
    if try_lock(Path(root)) is None:  # held (the fd stays open) until the process ends
        print(f"docksim daemon: {root} is in use by another daemon", file=sys.stderr)
        return 2
    daemon = Daemon(root, registry, max_concurrent_downloads, rootless=rootless, extract=extract,
                    retry=retry, durable=durable, max_layer_bytes=max_layer_bytes)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: daemon.shutdown())
    try:
        daemon.serve(socket_path)
    except OSError as exc:
        print(f"docksim daemon: cannot listen on {socket_path}: {exc}", file=sys.stderr)
        return 2
    log.info("stopped: containers removed, mounts gone")
    return 0
