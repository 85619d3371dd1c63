"""The Docker daemon on one node: the Engine API endpoints a client calls.

What it models: dockerd's HTTP handlers for the calls the Docker SDK for
Python makes during ``pull``, ``containers.run(..., remove=True)`` and
``images.remove``.  Each handler here is the daemon's work between receiving a
request and sending the answer; the client side (the socket round trip) is in
``model.client``.  Handlers that take simulated time are SimPy generators;
instantaneous ones return their answer directly.

Answers carry the HTTP status the real endpoint returns, because the client's
behaviour depends on it: ``POST /containers/create`` answers 404 when the
image is not in the store, and the SDK then pulls and retries.

With ``[daemon] api_workers`` the daemon handles at most that many Engine API
requests at once (the way in of a call: routing, decoding, the handler's
synchronous start); more concurrent clients queue for them.

Container operations (create, start, the exit's reaping, remove) share the
machine: with more of them at once than ``container_parallelism``, each runs
slower (``model/sharing.py``).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, NamedTuple

import simpy

from model.costs import Costs
from model.pull import PullManager
from model.recorder import Request
from model.sharing import ProcessorSharing
from model.store import ImageStore
from vocab.scenario import Image


class Answer(NamedTuple):
    """An HTTP answer from the Engine API: status code and (optional) body."""

    status: int
    value: Any = None


@dataclass(eq=False)
class Container:
    """A container record: its image, its command and its process's fate."""

    id: str
    image: str
    run_s: float             # the command: `sleep run_s`, or `true` when 0
    request: Request         # whose trace gets its run row
    exited: simpy.Event      # succeeds with the exit status once the daemon saw the exit


class Daemon:
    """dockerd on one node: image store, pull manager and container lifecycle."""

    def __init__(self, env: simpy.Environment, images: dict[str, Image], costs: Costs,
                 store: ImageStore, pulls: PullManager, api_workers: int | None = None,
                 rng: random.Random | None = None):
        self.env = env
        self.images = images
        self.costs = costs
        # Reserved for stochastic costs; the deterministic model draws nothing here.
        self.rng = rng or random.Random(0)
        self.store = store
        self.pulls = pulls
        self.api = simpy.Resource(env, api_workers) if api_workers else None
        # container operations share the machine (model/sharing.py)
        self.cpu = ProcessorSharing(env, costs.container_parallelism)
        self._containers: dict[str, Container] = {}
        self._created = 0

    # -- images ---------------------------------------------------------------
    def images_create(self, request: Request, ref: str):
        """POST /images/create?fromImage=...: the whole pull runs inside this call.

        A failed pull (429 from the registry, a layer that failed every attempt)
        answers with its status; the SDK raises and the client sees the error.
        """
        status = yield from self.pulls.pull(request, self.images[ref])
        return Answer(status)

    def image_inspect(self, ref: str) -> Answer:
        """GET /images/{ref}/json: the SDK reads the pulled image's record."""
        return Answer(200, ref) if self.store.has_image(ref) else Answer(404)

    def image_delete(self, request: Request, ref: str):
        """DELETE /images/{ref}: untag and delete the image, keep layers still used."""
        if not self.store.has_image(ref):
            return Answer(404)
        if self.store.in_use(ref):
            return Answer(409)  # "image is being used by a container"
        # The record goes first, so nothing created meanwhile can use the image.
        self.store.remove_image(ref)
        yield self.env.timeout(self.costs.rmi_s)
        return Answer(200)

    # -- containers -------------------------------------------------------------
    def _timed(self, began_s: float) -> tuple[float, float]:
        """The span a container phase is recorded over: the daemon's own work, or,
        for an engine timed around the client's calls (costs.phases_include_call),
        that work with half a round trip on either side, as the SDK sees it."""
        if not self.costs.phases_include_call:
            return began_s, self.env.now
        half_trip_s = self.costs.api_call_s / 2
        return began_s - half_trip_s, self.env.now + half_trip_s

    def _unmount_flush_s(self) -> float:
        """The wait for the disk's dirty pages when overlayfs is unmounted: dockerd's
        overlay2 mounts without `volatile`, so the unmount syncs (model/pagecache.py)."""
        if not self.costs.unmount_flushes:
            return 0.0
        return self.pulls.disk.sync(self.env.now) / self.costs.disk_flush_Bps

    def containers_create(self, request: Request, ref: str, run_s: float):
        """POST /containers/create: 404 when the image is absent, else snapshot + record."""
        if not self.store.has_image(ref):
            return Answer(404)
        self.store.pin(ref)  # from now on the image cannot be removed under it
        self.store.used(ref, self.env.now)
        start_s = self.env.now
        # creating mounts and unmounts the container's init layer
        flush_s = self._unmount_flush_s()
        yield from self.cpu.work(self.costs.create_s)
        yield self.env.timeout(flush_s)
        request.record("create", *self._timed(start_s))
        self._created += 1
        container = Container(f"c{self._created}", ref, run_s, request, self.env.event())
        self._containers[container.id] = container
        return Answer(201, container.id)

    def container_inspect(self, container_id: str) -> Answer:
        """GET /containers/{id}/json: the SDK's containers.get after create."""
        return Answer(200, self._containers[container_id])

    def container_start(self, request: Request, container_id: str):
        """POST /containers/{id}/start: the process runs from its exec on; the call
        answers once the daemon has recorded that (`start_answer_s` later)."""
        container = self._containers[container_id]
        start_s = self.env.now
        yield from self.cpu.work(self.costs.start_s)
        request.record("start", *self._timed(start_s))
        self.env.process(self._run(container))
        # a fixed delay, not shared work: it overlaps the process's exit, whose
        # cost calibration reads while both run (harness/calibrate.py)
        yield self.env.timeout(self.costs.start_answer_s)
        return Answer(204)

    def _run(self, container: Container):
        """The container's process runs, exits, and the daemon notices the exit."""
        exec_s = self.env.now
        yield self.env.timeout(container.run_s)
        yield from self.cpu.work(self.costs.exit_s)
        container.request.record("run", exec_s, self.env.now)
        container.exited.succeed(0)

    def container_logs(self, container_id: str) -> Answer:
        """GET /containers/{id}/logs?follow=1: answers at once with a stream."""
        return Answer(200, container_id)

    def container_wait(self, container_id: str):
        """POST /containers/{id}/wait: answers when the daemon has seen the exit."""
        status = yield self._containers[container_id].exited
        return Answer(200, status)

    def container_delete(self, request: Request, container_id: str):
        """DELETE /containers/{id}: unmount, delete the writable layer, forget it."""
        container = self._containers[container_id]
        start_s = self.env.now
        flush_s = self._unmount_flush_s()
        yield from self.cpu.work(self.costs.remove_s)
        yield self.env.timeout(flush_s)
        request.record("remove", *self._timed(start_s))
        del self._containers[container_id]
        self.store.unpin(container.image)
        return Answer(204)
