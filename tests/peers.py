"""Real peers for the engine's interop tests: both docker CLIs and the CNCF registry.

* ``DockerCli``: one installed docker client binary (the newer one at
  /usr/local/bin/docker, Debian's 20.10 at /usr/bin/docker) pointed at a daemon,
  with a private DOCKER_CONFIG so ~/.docker is left alone.
* ``cncf_registry()``: `docker-registry serve` (distribution 2.8) on a free
  loopback port with a temporary root directory, stopped by its pid afterwards.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from harness.procs import stop_process

import pytest

CLI_PATHS = ("/usr/local/bin/docker", "/usr/bin/docker")


def installed_clis() -> list:
    """pytest params, one per installed client, named by its version (cli-28.2.2)."""
    params = []
    for path in CLI_PATHS:
        if os.access(path, os.X_OK):
            version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
            name = version.split(",")[0].removeprefix("Docker version ").strip() or path
            params.append(pytest.param(path, id=f"cli-{name}"))
    return params or [pytest.param(None, marks=pytest.mark.skip(reason="no docker CLI installed"))]


@dataclass
class DockerCli:
    binary: str
    host: str          # unix://PATH
    config_dir: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
        env.update(DOCKER_HOST=self.host, DOCKER_CONFIG=str(self.config_dir))
        return env

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, *args], env=self.env(), capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def ok(self, *args: str) -> str:
        """Run, insist on exit status 0, return stdout."""
        done = self(*args)
        assert done.returncode == 0, f"docker {' '.join(args)}: {done.returncode}\n{done.stderr}"
        return done.stdout

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([self.binary, *args], env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def cncf_registry() -> Iterator[str]:
    """The CNCF registry on loopback; yields its address `127.0.0.1:PORT`."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    work = Path(tempfile.mkdtemp(prefix="docksim-cncf-"))
    port = free_port()
    (work / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {work}/data\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    log = open(work / "registry.log", "wb")
    proc = subprocess.Popen([binary, "serve", str(work / "config.yml")], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"docker-registry did not start: "
                                f"{(work / 'registry.log').read_text(errors='replace')[-500:]}")
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(proc, grace_s=10)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
