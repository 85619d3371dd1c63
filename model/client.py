"""Clients: the Docker SDK for Python issuing each scenario step's commands.

What it models: ``docker.from_env()`` on the node, talking HTTP to the daemon
over its unix socket.  Every SDK call is one Engine API request; its cost is
one socket round trip (``api_call_s``) plus whatever the daemon does.  Half of
the round trip is spent before the daemon starts working (the request going
in) and half after it finishes (the answer coming out), so daemon phases sit
inside their call the way they do on a real socket, and a call that waits for
something (``wait`` for the exit) overlaps its way in with that wait.

The calls per command are the SDK's own sequence:

* ``images.pull(ref)``: POST /images/create, then GET /images/{ref}/json.
* ``containers.run(ref, cmd, remove=True)``: POST /containers/create; on 404
  the SDK pulls as above and creates again; then GET /containers/{id}/json,
  POST start, GET logs (follow), GET /containers/{id}/json (the SDK checks
  for a TTY), POST wait, DELETE /containers/{id}.
* ``images.remove(ref)``: DELETE /images/{ref}.
"""
from __future__ import annotations

import inspect
from typing import Callable

import simpy

from model.costs import Costs
from model.daemon import Answer, Daemon
from model.recorder import Request
from vocab.scenario import Step


class Client:
    """One SDK client; its methods are SimPy generators returning the last Answer."""

    def __init__(self, env: simpy.Environment, daemon: Daemon, costs: Costs):
        self.env = env
        self.daemon = daemon
        self.half_trip_s = costs.api_call_s / 2

    def call(self, handler: Callable, *args):
        """One Engine API request: the way in, the daemon's handler, the way out."""
        yield self.env.timeout(self.half_trip_s)
        answer = handler(*args)
        if inspect.isgenerator(answer):
            answer = yield from answer  # the handler takes simulated time
        yield self.env.timeout(self.half_trip_s)
        return answer

    def pull(self, request: Request, ref: str):
        yield from self.call(self.daemon.images_create, request, ref)
        return (yield from self.call(self.daemon.image_inspect, ref))

    def run(self, request: Request, ref: str, run_s: float):
        daemon = self.daemon
        created: Answer = yield from self.call(daemon.containers_create, request, ref, run_s)
        if created.status == 404:
            yield from self.pull(request, ref)
            created = yield from self.call(daemon.containers_create, request, ref, run_s)
            if created.status != 201:
                return created  # removed again meanwhile: the SDK raises ImageNotFound
        container_id = created.value
        yield from self.call(daemon.container_inspect, container_id)
        yield from self.call(daemon.container_start, request, container_id)
        yield from self.call(daemon.container_logs, container_id)
        # the SDK inspects the container once more to learn whether it has a TTY
        yield from self.call(daemon.container_inspect, container_id)
        yield from self.call(daemon.container_wait, container_id)
        return (yield from self.call(daemon.container_delete, request, container_id))

    def rmi(self, request: Request, ref: str):
        return (yield from self.call(self.daemon.image_delete, request, ref))

    def command(self, request: Request, step: Step):
        """Dispatch one scenario command."""
        if step.command == "pull":
            return (yield from self.pull(request, step.image))
        if step.command == "run":
            return (yield from self.run(request, step.image, step.run_s))
        if step.command == "rmi":
            return (yield from self.rmi(request, step.image))
        raise ValueError(f"unknown command {step.command!r}")


def client_process(env: simpy.Environment, client: Client, step: Step, step_index: int,
                   client_index: int, replication: int, rows: list):
    """One client of a step: at ``at_s`` it sends its command ``repeat`` times in a row."""
    yield env.timeout(step.at_s)
    for repeat in range(step.repeat):
        request = Request(replication, step_index, client_index, repeat,
                          step.command, step.image, rows)
        sent_s = env.now
        yield from client.command(request, step)
        request.record("request", sent_s, env.now)
