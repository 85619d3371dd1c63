"""Shared fixtures for the daemon's integration tests.

The world they build is a small real one: a scenario's images built into a
temporary registry root, docksim's registry serving it in this process, and
docksim's daemon as a real subprocess (`python -m launcher`) on a unix socket,
driven by the real Docker SDK (and, in places, the real docker CLI).  Every
daemon is stopped with SIGTERM in a `finally`, after which no overlay mount may
remain below its directory.  Run as root (the daemon mounts and unshares).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import docker
import pytest

from registry.builder import BuildReport, build_images
from registry.server import RegistryServer
from vocab.scenario import parse_scenario

REPO_ROOT = Path(__file__).resolve().parent.parent
API_VERSION = "1.41"
TAG_HEADER = "X-Docksim-Request"
DAEMON_START_TIMEOUT_S = 20
DAEMON_STOP_TIMEOUT_S = 20
SLOW_MBPS = 40  # slow enough that pulls of a few MB overlap, fast enough for the suite

# Three images over four layers; "base" (bottom, carries busybox) is shared by all.
IMAGES_TOML = """
[scenario]
name = "daemon-tests"

[[image]]
ref = "docksim-test/alpha:1"
layers = [
  { name = "base", size_mb = 3.0, compression = 2.5 },
  { name = "big", size_mb = 4.0, compression = 1.0 },
]

[[image]]
ref = "docksim-test/beta:1"
layers = [
  { name = "base", size_mb = 3.0, compression = 2.5 },
  { name = "extra", size_mb = 1.0, compression = 2.5 },
]

[[image]]
ref = "docksim-test/gamma:1"
layers = [
  { name = "base", size_mb = 3.0, compression = 2.5 },
  { name = "mid", size_mb = 1.5, compression = 1.0 },
  { name = "top", size_mb = 1.5, compression = 1.0 },
]

[[step]]
command = "pull"
image = "docksim-test/alpha:1"
"""
ALPHA, BETA, GAMMA = "docksim-test/alpha:1", "docksim-test/beta:1", "docksim-test/gamma:1"


def short_id(digest: str) -> str:
    """The layer id Docker shows in pull progress: 12 hex digits of the blob digest."""
    return digest.split(":", 1)[1][:12]


def overlay_mounts_under(path: Path) -> list[str]:
    """Overlay mount points at or below `path`, from this process's mountinfo."""
    base = str(Path(path).resolve())
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            left, _, right = line.partition(" - ")
            point = left.split()[4].replace("\\040", " ")
            if right.split()[0] == "overlay" and (point == base or point.startswith(base + "/")):
                found.append(point)
    return found


@dataclass
class Built:
    root: Path            # the registry root
    report: BuildReport

    def layer_ids(self, ref: str) -> list[str]:
        """The image's layer ids (short blob digests), bottom first."""
        return [short_id(self.report.layers[n].digest) for n in self.report.images[ref].layers]


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    """The three test images, built once per session into a temporary registry root."""
    work = tmp_path_factory.mktemp("images")
    report = build_images(parse_scenario(IMAGES_TOML, "IMAGES_TOML"), work / "registry",
                          cache_dir=work / "cache")
    return Built(work / "registry", report)


@pytest.fixture(scope="session")
def registry(built) -> Iterator[RegistryServer]:
    """The built images on an unlimited link."""
    server = RegistryServer(built.root).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def slow_registry(built) -> Iterator[RegistryServer]:
    """The same images on a 40 Mbit/s link, so that downloads take visible time."""
    server = RegistryServer(built.root, bandwidth_mbps=SLOW_MBPS).start()
    try:
        yield server
    finally:
        server.stop()


_BLOB_LINE = re.compile(r"^GET /v2/(?P<repo>\S+)/blobs/sha256:(?P<hex>[0-9a-f]{12})\S* (?P<status>\d{3}) ")


class RegistryLog(logging.Handler):
    """Collects the registry's one-line-per-request log (logger "registry.server")."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def blob_gets(self) -> dict[str, int]:
        """Successful blob GETs per short digest (12 hex, as the log shortens them)."""
        counts: dict[str, int] = {}
        for line in self.lines:
            match = _BLOB_LINE.match(line)
            if match and match["status"] == "200":
                counts[match["hex"]] = counts.get(match["hex"], 0) + 1
        return counts


@pytest.fixture
def registry_log() -> Iterator[RegistryLog]:
    logger = logging.getLogger("registry.server")
    handler, level = RegistryLog(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@dataclass
class DaemonProcess:
    """One running `python -m launcher`, its socket, store root and log."""

    proc: subprocess.Popen
    socket: Path
    root: Path
    log: Path

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket}"

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.base_url, version=API_VERSION, timeout=60)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


@contextmanager
def running_daemon(registry_url: str, work: Path, max_concurrent_downloads: int = 3,
                   extra_args: tuple[str, ...] = ()) -> Iterator[DaemonProcess]:
    """Start the daemon in `work`, wait until its socket answers; on the way out
    SIGTERM it, wait for it, check no overlay is left mounted below `work`, and
    delete its store."""
    work.mkdir(parents=True, exist_ok=True)
    daemon = DaemonProcess(None, work / "d.sock", work / "root", work / "daemon.log")
    argv = [sys.executable, "-m", "launcher", "--socket", str(daemon.socket),
            "--root", str(daemon.root), "--registry", registry_url,
            "--max-concurrent-downloads", str(max_concurrent_downloads), *extra_args]
    with open(daemon.log, "wb") as log:
        daemon.proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + DAEMON_START_TIMEOUT_S
        while not _answers(daemon.socket):
            if daemon.proc.poll() is not None:
                pytest.fail(f"the daemon exited at start ({daemon.proc.returncode}):\n{daemon.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the daemon did not listen within {DAEMON_START_TIMEOUT_S} s")
            time.sleep(0.02)
        yield daemon
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.send_signal(signal.SIGTERM)
            try:
                daemon.proc.wait(timeout=DAEMON_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                daemon.proc.kill()
                daemon.proc.wait()
                pytest.fail(f"the daemon ignored SIGTERM for {DAEMON_STOP_TIMEOUT_S} s")
        left = overlay_mounts_under(work)
        assert not left, f"overlay mounts left after the daemon stopped: {left}"
        shutil.rmtree(daemon.root, ignore_errors=True)


@contextmanager
def sdk_client(daemon: DaemonProcess, pull: str = "") -> Iterator[docker.DockerClient]:
    """A Docker SDK client of `daemon`, with image `pull` pulled first; closed at the end."""
    client = daemon.client()
    try:
        if pull:
            repository, tag = pull.rsplit(":", 1)
            client.images.pull(repository, tag=tag)
        yield client
    finally:
        client.close()


@pytest.fixture
def no_containers_left(client):
    """Every test must leave the daemon without containers (run --rm, remove());
    a module that asks for it (pytestmark) defines the `client` fixture."""
    yield
    assert client.containers.list(all=True) == []


@pytest.fixture
def start_daemon(tmp_path_factory):
    """A factory: `start_daemon(registry_url, max_concurrent_downloads=3, extra_args=())`
    starts a fresh daemon with an empty store; all are stopped when the test ends."""
    with ExitStack() as stack:
        def start(registry_url: str, max_concurrent_downloads: int = 3,
                  extra_args: tuple[str, ...] = ()) -> DaemonProcess:
            return stack.enter_context(running_daemon(
                registry_url, tmp_path_factory.mktemp("daemon"), max_concurrent_downloads,
                extra_args))

        yield start


def pull_stream(client: docker.DockerClient, ref: str, request_tag: str = "") -> list[dict]:
    """`docker pull` through the SDK's low-level API: every decoded progress message.
    With `request_tag`, the pull carries the X-Docksim-Request header."""
    repository, tag = ref.rsplit(":", 1)
    if request_tag:
        client.api.headers[TAG_HEADER] = request_tag
    try:
        return list(client.api.pull(repository, tag=tag, stream=True, decode=True))
    finally:
        client.api.headers.pop(TAG_HEADER, None)


def phase_events(client: docker.DockerClient, request_tag: str) -> list[dict]:
    """The daemon's phase events for one request (docksim's own endpoint)."""
    answer = client.api.get(f"{client.api.base_url}/docksim/phases", params={"request": request_tag})
    assert answer.status_code == 200, answer.text
    return answer.json()["events"]


def statuses_by_layer(messages: list[dict]) -> dict[str, list[str]]:
    """Progress statuses per layer id, consecutive "Downloading" (or "Extracting")
    progress messages collapsed to one."""
    out: dict[str, list[str]] = {}
    for message in messages:
        layer = message.get("id", "")
        if len(layer) != 12 or "status" not in message:
            continue
        seen = out.setdefault(layer, [])
        if not (seen and seen[-1] == message["status"] in ("Downloading", "Extracting")):
            seen.append(message["status"])
    return out


def docker_cli() -> str:
    path = shutil.which("docker") or "/usr/local/bin/docker"
    if not os.access(path, os.X_OK):
        pytest.skip("the docker CLI is not installed")
    return path
