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
from dataclasses import dataclass

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
    node: str = "node"


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


def _phase_rows(ctx: RunContext, client: docker.DockerClient, tag: str, base: dict,
                t0: float) -> list[PhaseRow]:
    answer = client.api.get(f"{client.api.base_url}/docksim/phases", params={"request": tag})
    answer.raise_for_status()
    rows = []
    for event in answer.json()["events"]:
        rows.append(PhaseRow(**base, phase=event["phase"],
                             layer=ctx.layer_names.get(event["layer"], event["layer"]),
                             start_s=round(event["start"] - t0, 6), end_s=round(event["end"] - t0, 6),
                             bytes=event["bytes"]))
    return rows


def _client_thread(ctx: RunContext, step_index: int, client_index: int, client: docker.DockerClient,
                   t0: float, rows: list, errors: list, lock: threading.Lock) -> None:
    step = ctx.scenario.steps[step_index]
    time.sleep(max(0.0, t0 + step.at_s - time.monotonic()))
    for repeat in range(step.repeat):
        rid = request_id(step_index, client_index, repeat)
        base = dict(source="real", engine=ctx.engine, replication=ctx.replication, node=ctx.node,
                    client=client_index, request=rid, command=step.command, image=step.image)
        client.api.headers[TAG_HEADER] = rid
        sent = time.monotonic()
        try:
            _send(client, step)
        except Exception as exc:  # reported with the request that failed; the others go on
            with lock:
                errors.append(f"request {rid} ({step.command} {step.image}): {exc}")
            return
        done = time.monotonic()
        try:
            found = _phase_rows(ctx, client, rid, base, t0)
        except Exception as exc:  # else the thread would die and its rows go missing unnoticed
            with lock:
                errors.append(f"request {rid}: the daemon's phases could not be read: {exc}")
            return
        with lock:
            rows.append(PhaseRow(**base, phase="request", layer="", start_s=round(sent - t0, 6),
                                 end_s=round(done - t0, 6), bytes=None))
            rows.extend(found)


def run_clients(ctx: RunContext) -> list[PhaseRow]:
    """Play every step of the scenario against the daemon; return its rows."""
    base_url = f"unix://{ctx.socket_path}"
    clients = {(i, c): docker.DockerClient(base_url=base_url, version=API_VERSION,
                                           timeout=REQUEST_TIMEOUT_S)
               for i, step in enumerate(ctx.scenario.steps) for c in range(step.clients)}
    for client in clients.values():
        client.ping()  # open each connection before the clock starts
    rows: list[PhaseRow] = []
    errors: list[str] = []
    lock = threading.Lock()
    t0 = time.monotonic() + 0.05
    threads = [threading.Thread(target=_client_thread, args=(ctx, i, c, client, t0, rows, errors, lock))
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
