"""The measuring clients: the scenario's steps sent to a daemon through the
Docker SDK for Python, as a user's script would send them.

Each client is a thread with its own SDK client (its own connection), started
at the step's `at_s` on a clock shared with the daemon (CLOCK_MONOTONIC).  The
client times each request from send to answer; the daemon's phases for that
request are fetched afterwards from `GET /docksim/phases` and turned into trace
rows on the same clock.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import docker

from vocab.scenario import Scenario, Step
from vocab.trace import PhaseRow, request_id

API_VERSION = "1.41"
REQUEST_TIMEOUT_S = 600
TAG_HEADER = "X-Docksim-Request"


class MeasureError(Exception):
    """A measured run that failed; the text names the request and the cause."""


@dataclass(frozen=True)
class RunContext:
    scenario: Scenario
    socket_path: str
    replication: int
    engine: str                   # launcher | docker
    layer_names: dict[str, str]   # short layer id (12 hex) -> scenario layer name
    layer_sizes: dict[str, int] = field(default_factory=dict)  # short layer id -> content bytes
    node: str = "node"
    sockets: dict[str, str] | None = None  # node name -> its daemon's socket (several nodes)


def container_command(step: Step) -> list[str]:
    """What the container runs: `true`, or `sleep run_s`."""
    return ["true"] if step.run_s == 0 else ["sleep", f"{step.run_s:g}"]


def _send(client: docker.DockerClient, step: Step) -> None:
    """One request, exactly as the SDK's high-level calls make it."""
    if step.command == "pull":
        repository, tag = step.image.rsplit(":", 1)
        client.images.pull(repository, tag=tag)
    elif step.command == "run":
        client.containers.run(step.image, container_command(step), remove=True)
    elif step.command == "rmi":
        client.images.remove(step.image)
    else:  # the scenario loader refuses other commands; this is a programming error
        raise ValueError(step.command)


def _launcher_request(ctx: RunContext, client: docker.DockerClient, step: Step,
                      tag: str) -> tuple[float, list[dict]]:
    """docksim's daemon: the SDK's high-level call, then the daemon's own phase record."""
    _send(client, step)
    done = time.monotonic()
    answer = client.api.get(f"{client.api.base_url}/docksim/phases", params={"request": tag})
    answer.raise_for_status()
    return done, answer.json()["events"]


def _docker_request(ctx: RunContext, client: docker.DockerClient, step: Step,
                    tag: str) -> tuple[float, list[dict]]:
    """The real dockerd: phases read from its progress stream and the timed API calls."""
    from harness.docker_client import play
    events = play(client, step, container_command(step), ctx.layer_sizes)
    return time.monotonic(), events


DRIVERS = {"launcher": _launcher_request, "docker": _docker_request}


def _rows(ctx: RunContext, events: list[dict], base: dict, t0: float) -> list[PhaseRow]:
    return [PhaseRow(**base, phase=event["phase"],
                     layer=ctx.layer_names.get(event["layer"], event["layer"]),
                     start_s=round(event["start"] - t0, 6), end_s=round(event["end"] - t0, 6),
                     bytes=event["bytes"])
            for event in events]


def _client_thread(ctx: RunContext, step_index: int, client_index: int, node: str,
                   client: docker.DockerClient,
                   t0: float, rows: list, errors: list, lock: threading.Lock) -> None:
    step = ctx.scenario.steps[step_index]
    time.sleep(max(0.0, t0 + step.at_s - time.monotonic()))
    for repeat in range(step.repeat):
        rid = request_id(step_index, client_index, repeat)
        base = dict(source="real", engine=ctx.engine, replication=ctx.replication, node=node,
                    client=client_index, request=rid, command=step.command, image=step.image)
        client.api.headers[TAG_HEADER] = rid
        sent = time.monotonic()
        try:
            done, events = DRIVERS[ctx.engine](ctx, client, step, rid)
        except Exception as exc:  # reported with the request that failed; the others go on
            with lock:
                errors.append(f"request {rid} ({step.command} {step.image}): {exc}")
            return
        found = _rows(ctx, events, base, t0)
        with lock:
            rows.append(PhaseRow(**base, phase="request", layer="", start_s=round(sent - t0, 6),
                                 end_s=round(done - t0, 6), bytes=None))
            rows.extend(found)


def run_clients(ctx: RunContext) -> list[PhaseRow]:
    """Play every step of the scenario against the daemon; return its rows."""
    sockets = ctx.sockets or {ctx.node: ctx.socket_path}
    # as the model: on a step over N nodes, client index = node position x clients + k
    placed = {}
    for i, step in enumerate(ctx.scenario.steps):
        for position, node in enumerate(step.nodes or (next(iter(sockets)),)):
            for k in range(step.clients):
                placed[(i, position * step.clients + k)] = node
    clients = {key: docker.DockerClient(base_url=f"unix://{sockets[node]}", version=API_VERSION,
                                        timeout=REQUEST_TIMEOUT_S)
               for key, node in placed.items()}
    for client in clients.values():
        client.ping()  # open each connection before the clock starts
    rows: list[PhaseRow] = []
    errors: list[str] = []
    lock = threading.Lock()
    t0 = time.monotonic() + 0.05
    threads = [threading.Thread(target=_client_thread,
                                args=(ctx, i, c, placed[(i, c)], client, t0, rows, errors, lock))
               for (i, c), client in clients.items()]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for client in clients.values():
            client.close()
    if errors:
        raise MeasureError(sorted(errors)[0])
    return rows
