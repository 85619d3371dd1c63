"""Registries as processes of their own, for interop tests and benchmarks.

- `docksim_registry(root)`: `python -m registry serve` on a free loopback port;
- `cncf_registry(root)`: the CNCF distribution registry (Debian's
  `docker-registry`, version 2.8) with a filesystem root in `root`, as
  shared/FACTS.md describes: `docker-registry serve CONFIG.yml`.

Both yield `127.0.0.1:PORT` once the registry answers `GET /v2/`, and stop it
(SIGTERM, by PID) on the way out.  Nothing listens beyond 127.0.0.1.
"""
from __future__ import annotations

import http.client
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PROJECT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 20


class RegistryUnavailable(Exception):
    """The registry binary is missing or did not come up; the text says which."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(address: str) -> bool:
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        conn.request("GET", "/v2/")
        return conn.getresponse().status in (200, 401)
    except OSError:
        return False
    finally:
        conn.close()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(proc: subprocess.Popen, ready, log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RegistryUnavailable(f"{what} exited at start ({proc.returncode}): {' | '.join(tail)}")
        if time.monotonic() > deadline:
            raise RegistryUnavailable(f"{what} did not answer within {START_TIMEOUT_S} s")
        time.sleep(0.02)


@contextmanager
def docksim_registry(root: Path, *extra: str) -> Iterator[str]:
    """docksim's registry serving `root`; `extra` are more `serve` options."""
    work = Path(tempfile.mkdtemp(prefix="docksim-registry-"))
    ready, log_path = work / "ready", work / "registry.log"
    argv = [sys.executable, "-m", "registry", "--log-level", "WARNING", "serve", "--root", str(root),
            "--listen", "127.0.0.1:0", "--ready-file", str(ready), *extra]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        _wait(proc, lambda: ready.exists() and ready.read_text().endswith("\n"), log_path,
              "docksim's registry")
        yield ready.read_text().strip()
    finally:
        _stop(proc)
        shutil.rmtree(work, ignore_errors=True)


CNCF_CONFIG = """version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


@contextmanager
def cncf_registry(root: Path) -> Iterator[str]:
    """The CNCF distribution registry with its storage in `root`."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RegistryUnavailable("docker-registry is not installed (apt-get install docker-registry)")
    work = Path(tempfile.mkdtemp(prefix="docksim-cncf-"))
    port = _free_port()
    config, log_path = work / "config.yml", work / "registry.log"
    config.write_text(CNCF_CONFIG.format(root=Path(root).resolve(), port=port))
    address = f"127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        _wait(proc, lambda: _answers(address), log_path, "docker-registry")
        yield address
    finally:
        _stop(proc)
        shutil.rmtree(work, ignore_errors=True)
