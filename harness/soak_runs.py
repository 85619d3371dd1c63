"""`docker run --rm` many times over, the three ways clients do it.

* ``sdk``: ``client.containers.run(image, cmd, remove=True)``, the Docker SDK's
  own `--rm`: create, start, follow the logs, wait, then a client-side DELETE.
* ``api``: the docker CLI's calls for `docker run --rm`, made with the SDK's
  low-level client: create with HostConfig.AutoRemove, attach (hijacked
  connection, output so far included), wait with condition=removed (headers at
  once, body once the daemon has removed the container), start; the exit
  status comes with the wait's body.  The daemon removes the container itself
  when it sees the exit.
* ``docker``: the stock docker CLI itself, one process per run, when it is
  installed (it half-closes its attach connection, which the ``api`` style
  does not).

Half of the runs ask for a memory and a pids limit, since docksim's daemon makes
a cgroup only for a container with limits.  Every container prints its own
index and how many of its cgroups are its own (``docksim/<its hostname>``), so
a mixed-up output or a limit that made no cgroup is caught as a wrong answer.
A run never raises: its failure is recorded in its ``RunResult``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import docker

API_VERSION = "1.41"
MEMORY_LIMIT = "64m"
PIDS_LIMIT = 64
CLIENT_TIMEOUT_S = 120


def find_docker_cli() -> str | None:
    """The newer CLI where the project installs it, else any `docker` on PATH."""
    if os.access("/usr/local/bin/docker", os.X_OK):
        return "/usr/local/bin/docker"
    return shutil.which("docker")


def command(index: int) -> list[str]:
    """Echo the index, then count this container's own cgroups (0 without limits)."""
    return ["sh", "-c", f"echo soak-{index}; grep -c docksim/$(hostname) /proc/self/cgroup; true"]


@dataclass(frozen=True)
class Target:
    """What the runs go to: the daemon's socket and the image; with ``docker_cli``
    the real CLI is a third style (its config in ``config_dir``, not ~/.docker)."""
    socket: Path
    image: str
    docker_cli: str | None = None
    config_dir: Path | None = None

    @property
    def styles(self) -> tuple[str, ...]:
        return ("sdk", "api", "docker") if self.docker_cli else ("sdk", "api")

    def plan(self, index: int) -> tuple[str, bool]:
        """(style, limited) of run ``index``: every combination in turn."""
        n = len(self.styles)
        return self.styles[index % n], (index // n) % 2 == 1

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=f"unix://{self.socket}", version=API_VERSION,
                                   timeout=CLIENT_TIMEOUT_S)


@dataclass
class RunResult:
    index: int
    style: str            # sdk | api | docker
    limited: bool
    exit_code: int | None
    output: bytes
    seconds: float
    error: str = ""

    def problem(self, cgroups: bool) -> str:
        """Why this run is wrong, or "" (``cgroups``: the host can apply limits)."""
        if self.error:
            return self.error
        if self.exit_code != 0:
            return f"exit status {self.exit_code}"
        lines = self.output.decode(errors="replace").splitlines()
        if len(lines) != 2 or lines[0] != f"soak-{self.index}" or not lines[1].isdigit():
            return f"output {self.output!r}"
        if (int(lines[1]) > 0) != (self.limited and cgroups):
            return f"{lines[1]} own cgroups ({'with' if self.limited else 'without'} limits)"
        return ""


def _limits(limited: bool) -> dict:
    return {"mem_limit": MEMORY_LIMIT, "pids_limit": PIDS_LIMIT} if limited else {}


def _run_sdk(target: Target, client: docker.DockerClient, index: int, limited: bool) -> tuple[int, bytes]:
    out = client.containers.run(target.image, command(index), remove=True, **_limits(limited))
    return 0, out  # a non-zero status raises ContainerError


def _run_api(target: Target, client: docker.DockerClient, index: int, limited: bool) -> tuple[int, bytes]:
    api = client.api
    host_config = api.create_host_config(auto_remove=True, **_limits(limited))
    cid = api.create_container(target.image, command(index), host_config=host_config)["Id"]
    output = api.attach(cid, stdout=True, stderr=True, stream=True, logs=True)
    waiting = api.post(f"{api.base_url}/v{API_VERSION}/containers/{cid}/wait",
                       params={"condition": "removed"}, stream=True, timeout=CLIENT_TIMEOUT_S)
    try:
        if waiting.status_code != 200:
            raise RuntimeError(f"wait: {waiting.status_code} {waiting.text.strip()}")
        api.start(cid)
        text = b"".join(output)
        answer = waiting.json()
    finally:
        waiting.close()
    if answer.get("Error"):
        raise RuntimeError(f"wait: {answer['Error']}")
    return answer["StatusCode"], text


def _run_docker(target: Target, client: docker.DockerClient, index: int, limited: bool) -> tuple[int, bytes]:
    flags = ["--memory", MEMORY_LIMIT, "--pids-limit", str(PIDS_LIMIT)] if limited else []
    argv = [target.docker_cli, "-H", f"unix://{target.socket}", "run", "--rm", *flags,
            target.image, *command(index)]
    env = {**os.environ, "DOCKER_CONFIG": str(target.config_dir)}
    done = subprocess.run(argv, capture_output=True, env=env, timeout=CLIENT_TIMEOUT_S)
    if done.returncode and done.stderr:
        raise RuntimeError(f"docker run: status {done.returncode}: {done.stderr.decode(errors='replace')}")
    return done.returncode, done.stdout


STYLES = {"sdk": _run_sdk, "api": _run_api, "docker": _run_docker}


def run_one(target: Target, client: docker.DockerClient, index: int) -> RunResult:
    """Run number ``index``, its style and limits by ``target.plan``."""
    style, limited = target.plan(index)
    began = time.monotonic()
    try:
        code, out = STYLES[style](target, client, index, limited)
        return RunResult(index, style, limited, code, out, time.monotonic() - began)
    except Exception as exc:  # recorded, so that a soak counts failures and goes on
        text = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
        return RunResult(index, style, limited, None, b"", time.monotonic() - began, text)


def sequential(target: Target, first: int, count: int,
               after_each: Callable[[RunResult], None] = lambda r: None) -> list[RunResult]:
    """Runs ``first`` .. ``first + count - 1``, one after the other, from one SDK
    client, closed at the end (each of its kept-alive connections holds a
    daemon thread, which a census after the runs should not count)."""
    client = target.client()
    results = []
    try:
        for index in range(first, first + count):
            results.append(run_one(target, client, index))
            after_each(results[-1])
    finally:
        client.close()
    return results


def concurrent(target: Target, first: int, count: int) -> list[RunResult]:
    """``count`` runs at once, each from a client of its own (like that many
    `docker run` commands typed in parallel), released together by a barrier."""
    results: list[RunResult | None] = [None] * count
    clients = [target.client() for _ in range(count)]
    barrier = threading.Barrier(count)

    def one(slot: int) -> None:
        try:
            barrier.wait(timeout=CLIENT_TIMEOUT_S)
        except threading.BrokenBarrierError:
            pass  # go anyway: a run that starts late is still a run
        results[slot] = run_one(target, clients[slot], first + slot)

    threads = [threading.Thread(target=one, args=(i,), name=f"soak-{first + i}") for i in range(count)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for c in clients:
            c.close()
    return [r for r in results if r is not None]


class EventTally:
    """`docker events --filter type=container` followed in a thread: which
    containers were created, started, died (with which status) and destroyed."""

    def __init__(self, client: docker.DockerClient, since_s: float):
        self.actions: dict[str, list[str]] = {}
        self.exit_codes: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stream = client.events(since=since_s, decode=True, filters={"type": "container"})
        self._thread = threading.Thread(target=self._follow, name="soak-events", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        for message in self._stream:
            actor = message.get("Actor", {})
            with self._lock:
                self.actions.setdefault(actor.get("ID", ""), []).append(message.get("Action", ""))
                if message.get("Action") == "die":
                    self.exit_codes[actor.get("ID", "")] = actor.get("Attributes", {}).get("exitCode", "")

    def with_action(self, action: str) -> set[str]:
        with self._lock:
            return {cid for cid, acts in self.actions.items() if action in acts}

    def wait_for(self, action: str, count: int, timeout_s: float = 10.0) -> bool:
        """True once ``count`` containers have had ``action`` (events arrive a
        little after the API calls that caused them)."""
        deadline = time.monotonic() + timeout_s
        while len(self.with_action(action)) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        self._stream.close()
        self._thread.join(timeout=10)
