"""The registry as a server: its workers, service time, token auth, rate limit and failures.

What it models (an OCI distribution registry such as Docker Hub or the CNCF
registry, and a pull-through mirror, which is one too):

* Every HTTP request costs its round trip plus the server's service time
  (``request_ms``, by default the calibrated ``Costs.registry_request_s``).
  With ``workers`` set, at most that many requests are served at once and the
  others queue first come, first served: half the round trip brings the
  request in, it waits for a worker, is served, and half brings the answer.
* A pull's resolve is ``GET /v2/``, the manifest and the image config.  With
  ``auth = "token"`` the ``/v2/`` probe is answered 401 with a Bearer
  challenge and the client fetches a token from the realm (one more request)
  before the manifest, as Docker Hub's token auth works.
* The rate limit counts manifest GETs per client address in a sliding window
  of ``window_s`` (Docker Hub: one pull = one manifest GET).  Over the limit
  the manifest GET is answered 429 and not counted; dockerd gives up on that
  pull at once (it does not retry a 429).
* Faults (``[registry] faults``, ``vocab/faults.py``): each layer blob GET
  draws at most one -- a 503, a 429 with Retry-After, a stall, a cut, a
  flipped byte or a slow drip -- from the registry's seeded stream, exactly as
  docksim's real registry draws them.  What the client does about each is
  modelled with the download (``model/sources.py``).
"""
from __future__ import annotations

import random
from collections import deque
from typing import Hashable

import simpy

from model.costs import Costs
from vocab.cluster import Registry
from vocab.faults import Fault, FaultDraws

# GET /v2/, GET manifest, GET config (plain-HTTP registry, no token round trip).
RESOLVE_REQUESTS = 3


class RegistryServer:
    """One registry (or mirror) host serving HTTP requests."""

    def __init__(self, env: simpy.Environment, spec: Registry, costs: Costs,
                 rng: random.Random):
        self.env = env
        self.spec = spec
        self.service_s = (costs.registry_request_s if spec.request_ms is None
                          else spec.request_ms / 1000)
        self.workers = WorkerPool(env, spec.workers) if spec.workers else None
        self.faults = FaultDraws(spec.faults, rng)  # .counts: faults injected, by kind
        self._manifest_gets: dict[Hashable, deque[float]] = {}
        self.counts = {"requests": 0, "429": 0}  # 429: manifest GETs over the rate limit

    def request(self, rtt_s: float):
        """One HTTP request and its answer (a SimPy generator)."""
        self.counts["requests"] += 1
        if self.workers is None:
            yield self.env.timeout(rtt_s + self.service_s)
            return
        yield self.env.timeout(rtt_s / 2)
        yield self.workers.acquire()
        yield self.env.timeout(self.service_s)
        self.workers.release()
        yield self.env.timeout(rtt_s / 2)

    def resolve(self, address: Hashable, rtt_s: float):
        """/v2/ (and a token), manifest, config; returns the HTTP status of the pull."""
        spec = self.spec
        if self.workers is None and spec.auth == "none" and spec.rate_limit is None:
            # the plain case in one step, as three back-to-back requests
            self.counts["requests"] += RESOLVE_REQUESTS
            yield self.env.timeout(RESOLVE_REQUESTS * (rtt_s + self.service_s))
            return 200
        yield from self.request(rtt_s)              # GET /v2/ (401 with token auth)
        if spec.auth == "token":
            yield from self.request(rtt_s)          # GET token from the realm
        yield from self.request(rtt_s)              # GET manifest
        if not self._count_manifest(address):
            self.counts["429"] += 1
            return 429
        yield from self.request(rtt_s)              # GET config
        return 200

    def _count_manifest(self, address: Hashable) -> bool:
        """Sliding-window limit per address; a refused GET does not count."""
        limit = self.spec.rate_limit
        if limit is None:
            return True
        log = self._manifest_gets.setdefault(address, deque())
        while log and log[0] <= self.env.now - limit.window_s:
            log.popleft()
        if len(log) >= limit.pulls:
            return False
        log.append(self.env.now)
        return True

    def blob_answer(self) -> Fault | None:
        """A layer blob GET's fault, or None when it is served normally."""
        return self.faults.next()


class WorkerPool:
    """``capacity`` servers taken first come, first served (O(1), unlike a long
    ``simpy.Resource`` queue, whose grants shift the whole waiting list)."""

    def __init__(self, env: simpy.Environment, capacity: int):
        self.env = env
        self.free = capacity
        self._waiting: deque[simpy.Event] = deque()

    def acquire(self) -> simpy.Event:
        turn = self.env.event()
        if self.free:
            self.free -= 1
            turn.succeed()
        else:
            self._waiting.append(turn)
        return turn

    def release(self) -> None:
        if self._waiting:
            self._waiting.popleft().succeed()
        else:
            self.free += 1
