"""`docker run --rm` many times over, through the Docker SDK, the two ways clients do it.

* ``sdk``: ``client.containers.run(image, cmd, remove=True)``, the SDK's own
  `--rm`: create, start, follow the logs, wait, then a client-side DELETE.
* ``cli``: what the docker CLI sends for `docker run --rm`: create with
  HostConfig.AutoRemove, attach (hijacked connection, output so far included),
  wait with condition=removed (headers at once, body once the daemon has
  removed the container), start; the exit status comes with the wait's body.
  Here the daemon removes the container itself, when it sees the exit.

Half of the runs ask for a memory and a pids limit, since docksim's daemon makes
a cgroup only for a container with limits.  Every container prints its own
index and how many of its cgroups are its own (``docksim/<its hostname>``), so
a mixed-up output or a limit that made no cgroup is caught as a wrong answer.
A run never raises: its failure is recorded in its ``RunResult``.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import docker

API_VERSION = "1.41"
MEMORY_LIMIT = "64m"
PIDS_LIMIT = 64
CLIENT_TIMEOUT_S = 120


def command(index: int) -> list[str]:
    """Echo the index, then count this container's own cgroups (0 without limits)."""
    return ["sh", "-c", f"echo soak-{index}; grep -c docksim/$(hostname) /proc/self/cgroup; true"]


def plan(index: int) -> tuple[str, bool]:
    """(style, limited) of run ``index``: the four combinations in turn."""
    return ("sdk" if index % 2 == 0 else "cli"), (index // 2) % 2 == 1


@dataclass
class RunResult:
    index: int
    style: str            # sdk | cli
    limited: bool
    exit_code: int | None
    output: bytes
    seconds: float
    error: str = ""
    container_id: str = ""  # known for the cli style only

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


def _run_sdk(client: docker.DockerClient, image: str, index: int, limited: bool) -> tuple[int, bytes, str]:
    out = client.containers.run(image, command(index), remove=True, **_limits(limited))
    return 0, out, ""  # a non-zero status raises ContainerError


def _run_cli(client: docker.DockerClient, image: str, index: int, limited: bool) -> tuple[int, bytes, str]:
    api = client.api
    host_config = api.create_host_config(auto_remove=True, **_limits(limited))
    cid = api.create_container(image, command(index), host_config=host_config)["Id"]
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
    return answer["StatusCode"], text, cid


def run_one(client: docker.DockerClient, image: str, index: int) -> RunResult:
    """Run number ``index``, its style and limits by ``plan``."""
    style, limited = plan(index)
    began = time.monotonic()
    try:
        code, out, cid = (_run_sdk if style == "sdk" else _run_cli)(client, image, index, limited)
        return RunResult(index, style, limited, code, out, time.monotonic() - began, "", cid)
    except Exception as exc:  # recorded, so that a soak counts failures and goes on
        text = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
        return RunResult(index, style, limited, None, b"", time.monotonic() - began, text)


def sequential(client: docker.DockerClient, image: str, first: int, count: int,
               after_each: Callable[[RunResult], None] = lambda r: None) -> list[RunResult]:
    """Runs ``first`` .. ``first + count - 1``, one after the other, on one client."""
    results = []
    for index in range(first, first + count):
        results.append(run_one(client, image, index))
        after_each(results[-1])
    return results


def concurrent(make_client: Callable[[], docker.DockerClient], image: str, first: int,
               count: int) -> list[RunResult]:
    """``count`` runs at once, each from a client of its own (like that many
    `docker run` commands typed in parallel), released together by a barrier."""
    results: list[RunResult | None] = [None] * count
    clients = [make_client() for _ in range(count)]
    barrier = threading.Barrier(count)

    def one(slot: int) -> None:
        try:
            barrier.wait(timeout=CLIENT_TIMEOUT_S)
        except threading.BrokenBarrierError:
            pass  # go anyway: a run that starts late is still a run
        results[slot] = run_one(clients[slot], image, first + slot)

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
