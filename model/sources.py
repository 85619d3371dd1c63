"""Where a node's pulls get their bytes: the registry itself, or a pull-through mirror.

What it models:

* ``RegistrySource`` -- dockerd's blob GET straight from the registry.  A
  failed attempt is retried up to ``max-download-attempts`` times in all
  (default 5), after a back-off of ``[daemon] retry_backoff_s`` (moby: 5 s) x
  the failures so far (moby's ``distribution/xfer``); a retry resumes with an
  HTTP Range request from the bytes already received.  The download slot
  stays held during the back-off, as the retry loop runs inside the transfer.
  What each registry fault (``vocab/faults.py``) costs the client:
  - 503: the request's round trip, then the back-off;
  - 429: the round trip, then ``retry_after_s`` instead of the back-off;
  - stall at fraction f of the body: f of the bytes, then ``stall_s`` of
    silence and the rest -- or, when ``stall_s`` reaches ``[daemon]
    read_timeout_s``, the timeout, the back-off and a Range resume;
  - cut at f: f of the bytes, the back-off, a Range resume;
  - flip: every byte, then the digest check fails: the download is discarded,
    and after the back-off the blob is fetched again from its first byte;
  - drip: the body at no more than ``drip_kbps`` (a private link of that rate
    on the flow's path, so it also yields to a slower share of the link).
* ``MirrorSource`` -- a registry mirror (``registry-mirrors`` in daemon.json)
  that is a pull-through cache: one per rack switch, or one per cluster.  The
  first request for a manifest or a blob goes upstream; concurrent requests
  for a blob being fetched wait for it; later ones are served from the
  mirror's disk over its link.  The first requester's bytes flow through the
  mirror as they arrive (cut-through): its path is registry -> mirror -> node.
  The mirror's storage is unlimited.

Both share ``Fetcher.blob_get``; the peer-to-peer source is in ``model/p2p.py``.
"""
from __future__ import annotations

import math
from typing import Hashable

import simpy

from model.flows import FlowNetwork
from model.registry import RegistryServer
from model.tcp import slow_start_s
from model.topology import REGISTRY, Topology
from vocab.scenario import Image, Layer

RETRY_BACKOFF_S = 5.0   # moby: "Retrying in 5 seconds", 10, 15 ...


class Fetched:
    """A blob GET's outcome: true when every byte arrived; ``wire_bytes`` counts
    every byte that crossed the network, retries and discarded downloads included."""

    def __init__(self, ok: bool, wire_bytes: float):
        self.ok, self.wire_bytes = ok, wire_bytes

    def __bool__(self) -> bool:
        return self.ok


class Fetcher:
    """Moves bytes between hosts over the network, with TCP start-up if asked."""

    def __init__(self, env: simpy.Environment, topology: Topology, network: FlowNetwork,
                 slow_start: bool, attempts: int, address: dict[str, Hashable], *,
                 backoff_s: float = RETRY_BACKOFF_S, read_timeout_s: float = math.inf,
                 drip_lanes: list[int] | None = None, setup_rtts: tuple[float, float] = (0.0, 0.0),
                 bulk_extra_rtts: float = 0.0):
        self.env = env
        self.topology = topology
        self.network = network
        self.slow_start = slow_start
        # round trips opening connections (resolve, each blob GET): real TCP only
        self.setup_rtts = setup_rtts if slow_start else (0.0, 0.0)
        self.bulk_extra_rtts = bulk_extra_rtts  # leaving slow start (model/tcp.py)
        self.attempts = attempts
        self.address = address   # node -> the address the registry sees (for its rate limit)
        self.backoff_s = backoff_s
        self.read_timeout_s = read_timeout_s
        self.drip_lanes = drip_lanes if drip_lanes is not None else []  # free private links

    def flow(self, links: tuple[int, ...], size_bytes: float, rtt_s: float):
        """One stream of bytes along ``links`` (a SimPy generator)."""
        if self.slow_start:
            delay_s = slow_start_s(size_bytes, rtt_s, self.topology.bottleneck_Bps(links),
                                   self.bulk_extra_rtts)
            if delay_s > 0:
                yield self.env.timeout(delay_s)
        if links:
            yield self.network.transfer(links, size_bytes)

    def connect(self, rtt_s: float, rtts: float):
        """TCP's handshake (and whatever else opens a connection), in round trips."""
        if rtts * rtt_s > 0:
            yield self.env.timeout(rtts * rtt_s)

    def blob_get(self, server: RegistryServer, rtt_s: float, links: tuple[int, ...],
                 size_bytes: int):
        """GET one blob, with retries and Range resume; returns a ``Fetched``."""
        received = wire = 0.0
        for attempt in range(1, self.attempts + 1):
            yield from self.connect(rtt_s, self.setup_rtts[1])  # a fresh connection each attempt
            yield from server.request(rtt_s)
            fault = server.blob_answer()
            kind = fault.kind if fault is not None else None
            todo = size_bytes - received
            wait_s = self.backoff_s * attempt   # the failures so far: this attempt's number
            if kind is None:
                yield from self.flow(links, todo, rtt_s)
                return Fetched(True, wire + todo)
            if kind == "drip":
                yield from self._drip(links, todo, rtt_s)
                return Fetched(True, wire + todo)
            if kind == "429":
                wait_s = server.spec.faults.retry_after_s
            elif kind in ("cut", "stall"):
                part = todo * fault.at
                yield from self.flow(links, part, rtt_s)
                received, wire = received + part, wire + part
                if kind == "stall":
                    stall_s = server.spec.faults.stall_s
                    if stall_s < self.read_timeout_s:   # silence, then the rest
                        yield self.env.timeout(stall_s)
                        yield from self.flow(links, todo - part, rtt_s)
                        return Fetched(True, wire + todo - part)
                    yield self.env.timeout(self.read_timeout_s)
            elif kind == "flip":
                yield from self.flow(links, todo, rtt_s)
                received, wire = 0.0, wire + todo       # discarded: start again from byte 0
            if attempt < self.attempts:
                yield self.env.timeout(wait_s)
        return Fetched(False, wire)

    def _drip(self, links: tuple[int, ...], size_bytes: float, rtt_s: float):
        """A dripping body: through a private link of the drip rate besides its path."""
        if not self.drip_lanes:
            raise RuntimeError("no free drip lane: the world made too few for its downloads")
        lane = self.drip_lanes.pop()
        try:
            yield from self.flow(links + (lane,), size_bytes, rtt_s)
        finally:
            self.drip_lanes.append(lane)


class RegistrySource:
    """Every node pulls from the registry."""

    def __init__(self, fetcher: Fetcher, registry: RegistryServer):
        self.fetcher = fetcher
        self.registry = registry

    def resolve(self, node: str, image: Image):
        rtt_s = self.fetcher.topology.rtt_s(node, REGISTRY)
        yield from self.fetcher.connect(rtt_s, self.fetcher.setup_rtts[0])
        return (yield from self.registry.resolve(self.fetcher.address[node], rtt_s))

    def download(self, node: str, layer: Layer):
        topology = self.fetcher.topology
        return (yield from self.fetcher.blob_get(self.registry, topology.rtt_s(node, REGISTRY),
                                                 topology.links(REGISTRY, node),
                                                 layer.compressed_bytes))

    def forget(self, node: str, layer: str) -> None:
        """A node deleted a layer (nothing to do: the registry keeps everything)."""


class MirrorSource(RegistrySource):
    """Nodes pull through their rack's (or the cluster's) pull-through mirror."""

    def __init__(self, fetcher: Fetcher, registry: RegistryServer,
                 mirrors: dict[str, RegistryServer]):
        super().__init__(fetcher, registry)
        self.mirrors = mirrors                      # mirror host -> its server
        self._manifests: dict[tuple[str, str], simpy.Event] = {}
        self._blobs: dict[tuple[str, str], simpy.Event] = {}

    def resolve(self, node: str, image: Image):
        topology = self.fetcher.topology
        mirror = topology.mirror_of[node]
        key = (mirror, image.ref)
        cached = self._manifests.get(key)
        if cached is None or (cached.triggered and cached.value != 200):
            cached = self._manifests[key] = self.env_event()
            status = yield from self.registry.resolve(mirror, topology.rtt_s(mirror, REGISTRY))
            cached.succeed(status)
        status = yield cached
        if status != 200:
            return status
        yield from self.fetcher.connect(topology.rtt_s(node, mirror), self.fetcher.setup_rtts[0])
        return (yield from self.mirrors[mirror].resolve(node, topology.rtt_s(node, mirror)))

    def download(self, node: str, layer: Layer):
        topology = self.fetcher.topology
        mirror = topology.mirror_of[node]
        server = self.mirrors[mirror]
        local_rtt_s = topology.rtt_s(node, mirror)
        key = (mirror, layer.name)
        stored = self._blobs.get(key)
        if stored is None or (stored.triggered and not stored.value):
            stored = self._blobs[key] = self.env_event()
            yield from server.request(local_rtt_s)   # the node's GET reaches the mirror
            links = topology.links(REGISTRY, mirror) + topology.links(mirror, node)
            ok = yield from self.fetcher.blob_get(self.registry, topology.rtt_s(mirror, REGISTRY),
                                                  links, layer.compressed_bytes)
            stored.succeed(ok)
            return ok
        if not (yield stored):
            return False
        return (yield from self.fetcher.blob_get(server, local_rtt_s, topology.links(mirror, node),
                                                 layer.compressed_bytes))

    def env_event(self) -> simpy.Event:
        return self.fetcher.env.event()
