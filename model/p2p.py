"""Peer-to-peer distribution of layer blobs in pieces (Dragonfly, Kraken, BitTorrent).

What it models: each node runs a P2P agent as dockerd's registry mirror.  The
manifest still comes from the registry; a layer blob is cut into pieces of
``piece_mb`` and every piece is fetched from a peer that holds it, or, when no
node holds it yet, once from the registry ("back to source").  A node serves
every piece it holds as soon as it holds it, so a piece spreads while its
layer is still downloading.

* A layer download fetches up to ``peer_download_slots`` pieces at once.  It
  scans its missing pieces from an offset of its own (so nodes start at
  different pieces) and takes the first one some peer can serve now -- a
  peer in its own rack first -- else the first one nobody holds or fetches.
  Otherwise it waits, and is woken when a peer gets a piece or frees a slot.
* A node uploads at most ``peer_upload_slots`` pieces at once, each in an
  upload slot of ``peer_upload_mbps / slots`` (BitTorrent's unchoke slots,
  Dragonfly's per-peer upload limit).  Modelling choice: a slot's share is not
  lent to the other slots when it is idle.  This keeps the flows of one node
  from coupling, through its uplink, every node it serves -- so a rate
  recomputation stays local and a 2,000-node swarm is fast -- at the cost of
  work conservation on the uplink.
* A piece request costs one round trip to the peer (plus slow start, if on);
  a piece from the registry is one registry request (its workers and service
  time).  Pieces from the registry meet no ``[registry] faults``.

Left out: a tracker/scheduler's own latency, choking and tit-for-tat, piece
verification, and the agent's own piece cache (a node serves exactly the
layers in its image store; evicting or removing a layer stops that).
"""
from __future__ import annotations

import math
from collections import deque
from itertools import islice
from dataclasses import dataclass, field

import simpy

from model.registry import RegistryServer
from model.sources import Fetcher
from model.topology import REGISTRY
from vocab.cluster import Distribution
from vocab.scenario import MB, Image, Layer

WAKE_FAILURES = 8   # waiting downloads tried in a row without success before giving up a wake


class LayerSwarm:
    """Who holds which piece of one layer."""

    def __init__(self, layer: Layer, piece_bytes: int):
        size = layer.compressed_bytes
        self.count = max(1, math.ceil(size / piece_bytes))
        self.sizes = [min(piece_bytes, size - i * piece_bytes) for i in range(self.count)]
        self.holders: list[dict[str, None]] = [{} for _ in range(self.count)]
        self.free_holders: list[dict[str, None]] = [{} for _ in range(self.count)]
        self.from_source: set[int] = set()
        self.waiting: deque[PieceJob] = deque()


@dataclass(eq=False)
class PieceJob:
    """One node's download of one layer, piece by piece."""

    node: str
    swarm: LayerSwarm
    need: list[int]                    # missing pieces not being fetched, in scan order
    done: simpy.Event
    running: int = 0
    missing: int = 0
    waiting: bool = False
    fetching: set[int] = field(default_factory=set)


class Swarm:
    """The P2P source: pieces among peers, the registry as the source of last resort."""

    def __init__(self, fetcher: Fetcher, registry: RegistryServer, spec: Distribution):
        self.fetcher = fetcher
        self.env = fetcher.env
        self.registry = registry
        self.topology = topology = fetcher.topology
        self.piece_bytes = max(1, round(spec.piece_mb * MB))
        self.download_slots = spec.peer_download_slots
        self.layers: dict[str, LayerSwarm] = {}
        self.free_up: dict[str, list[int]] = {}    # node -> its free upload slot links
        self.held: dict[str, list[tuple[LayerSwarm, int]]] = {}
        self.order = {node: i for i, node in enumerate(topology.nodes)}
        for node in topology.nodes:
            upload = topology.access_Bps(node)
            if spec.peer_upload_mbps is not None:
                upload = min(upload, topology.costs.link_Bps(spec.peer_upload_mbps))
            slots = spec.peer_upload_slots
            self.free_up[node] = [topology.add_link(upload / slots) for _ in range(slots)]
            self.held[node] = []

    # -- the source interface (see model/sources.py) ----------------------------------
    def resolve(self, node: str, image: Image):
        rtt_s = self.topology.rtt_s(node, REGISTRY)
        return (yield from self.registry.resolve(self.fetcher.address[node], rtt_s))

    def download(self, node: str, layer: Layer):
        swarm = self._swarm(layer)
        offset = self.order[node] * 7 % swarm.count
        order = [(offset + i) % swarm.count for i in range(swarm.count)]
        need = [p for p in order if node not in swarm.holders[p]]
        job = PieceJob(node, swarm, need, self.env.event(), missing=len(need))
        if not need:
            return True
        self._pump(job)
        return (yield job.done)

    def seed(self, node: str, layer: Layer) -> None:
        """The node holds the whole layer (cached at time 0)."""
        swarm = self._swarm(layer)
        for p in range(swarm.count):
            self._add_holder(node, swarm, p)

    def forget(self, node: str, layer_name: str) -> None:
        """The node deleted the layer: it serves its pieces no more."""
        swarm = self.layers.get(layer_name)
        if swarm is None:
            return
        for p in range(swarm.count):
            swarm.holders[p].pop(node, None)
            swarm.free_holders[p].pop(node, None)
        self.held[node] = [(s, p) for s, p in self.held[node] if s is not swarm]

    # -- scheduling ------------------------------------------------------------------
    def _swarm(self, layer: Layer) -> LayerSwarm:
        swarm = self.layers.get(layer.name)
        if swarm is None:
            swarm = self.layers[layer.name] = LayerSwarm(layer, self.piece_bytes)
        return swarm

    def _choose(self, job: PieceJob) -> tuple[int, str] | None:
        """The next piece and who serves it: a free peer (same rack first), else the registry."""
        swarm, rack = job.swarm, self.topology.rack_of[job.node]
        from_source = None
        for i, p in enumerate(job.need):
            free = swarm.free_holders[p]
            if free:
                peer = next(iter(free))
                for candidate in islice(free, 8):
                    if self.topology.rack_of[candidate] == rack:
                        peer = candidate
                        break
                return job.need.pop(i), peer
            if from_source is None and not swarm.holders[p] and p not in swarm.from_source:
                from_source = i
        if from_source is not None:
            return job.need.pop(from_source), REGISTRY
        return None

    def _pump(self, job: PieceJob) -> bool:
        """Start pieces while the job has free slots; remember it if it must wait."""
        started = False
        while job.running < self.download_slots and job.need:
            choice = self._choose(job)
            if choice is None:
                break
            piece, peer = choice
            job.running += 1
            started = True
            if peer == REGISTRY:
                job.swarm.from_source.add(piece)
                slot = -1
            else:
                slot = self._take_slot(peer)  # now, so the next choice sees it taken
            self.env.process(self._fetch(job, piece, peer, slot))
        if job.running < self.download_slots and job.need and not job.waiting:
            job.waiting = True
            job.swarm.waiting.append(job)
        return started

    def _wake(self, swarm: LayerSwarm) -> None:
        """Offer what just became available to the downloads waiting on this layer."""
        failures, tries = 0, len(swarm.waiting)
        while swarm.waiting and failures < WAKE_FAILURES and tries > 0:
            tries -= 1
            job = swarm.waiting.popleft()
            job.waiting = False
            if not job.need:
                continue
            if self._pump(job):
                failures = 0
            else:
                failures += 1

    def _fetch(self, job: PieceJob, piece: int, peer: str, slot: int):
        swarm, node, size = job.swarm, job.node, job.swarm.sizes[piece]
        topology, fetcher = self.topology, self.fetcher
        if peer == REGISTRY:
            rtt_s = topology.rtt_s(node, REGISTRY)
            yield from self.registry.request(rtt_s)
            yield from fetcher.flow(topology.links(REGISTRY, node), size, rtt_s)
            swarm.from_source.discard(piece)
        else:
            rtt_s = topology.rtt_s(peer, node)
            if rtt_s > 0:
                yield self.env.timeout(rtt_s)   # the piece request reaches the peer
            # the peer's upload slot replaces its access uplink on the path
            links = (slot,) + topology.links(topology.parent[peer], node)
            yield from fetcher.flow(links, size, rtt_s)
            self._give_slot(peer, slot)
        self._add_holder(node, swarm, piece)
        job.running -= 1
        job.missing -= 1
        if job.missing == 0:
            job.done.succeed(True)
        else:
            self._pump(job)
        self._wake(swarm)

    # -- upload slots and holders ------------------------------------------------------
    def _add_holder(self, node: str, swarm: LayerSwarm, piece: int) -> None:
        if node in swarm.holders[piece]:
            return
        swarm.holders[piece][node] = None
        self.held[node].append((swarm, piece))
        if self.free_up[node]:
            swarm.free_holders[piece][node] = None

    def _take_slot(self, peer: str) -> int:
        slots = self.free_up[peer]
        slot = slots.pop()
        if not slots:
            for swarm, p in self.held[peer]:
                swarm.free_holders[p].pop(peer, None)
        return slot

    def _give_slot(self, peer: str, slot: int) -> None:
        slots = self.free_up[peer]
        slots.append(slot)
        swarms: dict[int, LayerSwarm] = {}
        for swarm, p in self.held[peer]:
            if len(slots) == 1:
                swarm.free_holders[p][peer] = None
            swarms[id(swarm)] = swarm
        for swarm in swarms.values():
            self._wake(swarm)
