"""A real Docker daemon, started from the installed `dockerd` into a temporary
directory, for interop tests, benchmarks and `--engine docker` measurements.

Everything it owns lives under one directory: data root, exec root, pid file,
unix socket and a config file (so nothing lands in /etc).  It does not touch
iptables or create a bridge.  Plain-HTTP registries on 127.0.0.0/8 are allowed
by dockerd without `--insecure-registry`.  On stop it is sent SIGTERM, and the
`exec/netns/default` mount it leaves behind is unmounted before the directory
is deleted.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from harness.measure import remove_tree
from harness.procs import stop_process

START_TIMEOUT_S = 30


class DockerdUnavailable(Exception):
    """dockerd is not installed, or did not come up; the text says which."""


def dockerd_path() -> str | None:
    return shutil.which("dockerd")


@contextmanager
def run_dockerd(workdir: Path | None = None, extra_args: list[str] | None = None,
                popen=subprocess.Popen) -> Iterator[str]:
    """Start dockerd (with `popen`, e.g. inside a node's network namespace); yield
    its socket path (use as `unix://PATH`); stop and clean up."""
    binary = dockerd_path()
    if binary is None:
        raise DockerdUnavailable("dockerd is not installed (apt-get install docker.io)")
    base = Path(tempfile.mkdtemp(prefix="docksim-dockerd-", dir=workdir))
    sock = base / "docker.sock"
    config = base / "daemon.json"
    config.write_text(json.dumps({"deprecated-key-path": str(base / "key.json")}))
    argv = [binary, "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
            "--pidfile", str(base / "dockerd.pid"), "--host", f"unix://{sock}",
            "--config-file", str(config), "--iptables=false", "--ip-masq=false",
            "--ip-forward=false", "--bridge=none", "--storage-driver", "overlay2",
            *(extra_args or [])]
    log = open(base / "dockerd.log", "wb")
    proc = popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_until_up(proc, sock, base / "dockerd.log")
        yield str(sock)
    finally:
        stop_process(proc, grace_s=20)
        log.close()
        remove_tree(base)


def _wait_until_up(proc: subprocess.Popen, sock: Path, log: Path) -> None:
    import docker
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:]
            raise DockerdUnavailable(f"dockerd exited at start ({proc.returncode}): {' '.join(tail)}")
        if sock.exists():
            try:
                docker.DockerClient(base_url=f"unix://{sock}", version="auto").close()
                return
            except Exception:  # not answering yet
                pass
        time.sleep(0.05)
    raise DockerdUnavailable(f"dockerd did not answer within {START_TIMEOUT_S} s")
