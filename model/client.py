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

A failed pull (a 429, a layer that failed all its attempts) makes the SDK
raise; with ``[[step]] retries`` the client instead behaves like kubelet
and pulls again after an image-pull back-off of 10 s, doubling up to 300 s.
"""
from __future__ import annotations

import inspect
from typing import Callable

import simpy

from model.costs import Costs
from model.daemon import Answer, Daemon
from model.recorder import Request
from vocab.scenario import Step

PULL_BACKOFF_S = 10.0      # kubelet's image pull back-off: first delay
PULL_BACKOFF_MAX_S = 300.0  # ... doubling up to this


class Client:
    """One SDK client; its methods are SimPy generators returning the last Answer."""

    def __init__(self, env: simpy.Environment, daemon: Daemon, costs: Costs, retries: int = 0):
        self.env = env
        self.daemon = daemon
        self.half_trip_s = costs.api_call_s / 2
        self.retries = retries

    def call(self, handler: Callable, *args):
        """One Engine API request: the way in, the daemon's handler, the way out."""
        if self.daemon.api is None:
            yield self.env.timeout(self.half_trip_s)
        else:
            with self.daemon.api.request() as turn:
                yield turn
                yield self.env.timeout(self.half_trip_s)
        answer = handler(*args)
        if inspect.isgenerator(answer):
            answer = yield from answer  # the handler takes simulated time
        yield self.env.timeout(self.half_trip_s)
        return answer

    def pull(self, request: Request, ref: str):
        backoff_s = PULL_BACKOFF_S
        for attempt in range(self.retries + 1):
            if attempt:
                yield self.env.timeout(backoff_s)
                backoff_s = min(2 * backoff_s, PULL_BACKOFF_MAX_S)
            pulled = yield from self.call(self.daemon.images_create, request, ref)
            if pulled.status == 200:
                return (yield from self.call(self.daemon.image_inspect, ref))
        return pulled  # the SDK raises APIError

    def run(self, request: Request, ref: str, run_s: float):
        daemon = self.daemon
        created: Answer = yield from self.call(daemon.containers_create, request, ref, run_s)
        if created.status == 404:
            pulled = yield from self.pull(request, ref)
            if pulled.status not in (200, 404):  # the pull failed (404: removed meanwhile)
                return pulled
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
            return (yield from self.pull(request, request.image))
        if step.command == "run":
            return (yield from self.run(request, request.image, step.run_s))
        if step.command == "rmi":
            return (yield from self.rmi(request, request.image))
        raise ValueError(f"unknown command {step.command!r}")

