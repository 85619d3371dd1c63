"""The daemon's pull manager: resolve, download, extract, register.

What it models (dockerd's distribution code and its layer download manager):

* ``resolve``: before any layer, the puller asks the registry three things in
  sequence -- ``GET /v2/`` (API probe), the manifest, the image config.  Each
  is one round trip plus the registry's handling time.  A pull of an image
  whose layers are all present still resolves: Docker always checks the tag.
* Downloads are *transfers* keyed by layer.  A layer already registered is
  skipped ("Already exists"); a layer another pull is already fetching is not
  fetched again -- the second pull watches the first pull's transfer.
* All transfers of the daemon share one pool of ``max-concurrent-downloads``
  slots, granted first come first served; a pull queues its missing layers
  bottom first, so they start in layer order as slots free up.  A slot is
  held for the blob GET only (request round trip + bytes over the link).
* Extraction is strictly bottom to top: layer k is applied when its blob is
  downloaded *and* layer k-1 is registered, so extracting early layers
  overlaps downloading later ones.  The transfer (and its rows) belong to the
  request whose pull started it.
* The pull ends ``pull_fixed_s`` after its last layer is registered, when the
  image record is written.
"""
from __future__ import annotations

from dataclasses import dataclass

import simpy

from model.costs import Costs
from model.link import Link
from model.recorder import Request
from model.store import ImageStore
from vocab.scenario import Image, Layer

# GET /v2/, GET manifest, GET config (plain-HTTP registry, no token round trip).
RESOLVE_REQUESTS = 3


@dataclass(eq=False)
class LayerTransfer:
    """One layer being fetched and registered, for every pull that needs it."""

    layer: Layer
    owner: Request           # the request whose pull started it; its rows go there
    registered: simpy.Event  # succeeds when the layer is in the store


class PullManager:
    """Pulls images into one node's store over its link to the registry."""

    def __init__(self, env: simpy.Environment, costs: Costs, store: ImageStore,
                 link: Link, rtt_s: float, max_concurrent_downloads: int):
        self.env = env
        self.costs = costs
        self.store = store
        self.link = link
        self.rtt_s = rtt_s
        self.slots = simpy.Resource(env, capacity=max_concurrent_downloads)
        self._transfers: dict[str, LayerTransfer] = {}

    def registry_request_s(self) -> float:
        """One HTTP request to the registry: a round trip plus its handling."""
        return self.rtt_s + self.costs.registry_request_s

    def in_flight(self) -> tuple[str, ...]:
        """Layers being fetched right now (for tests and inspection)."""
        return tuple(self._transfers)

    def pull(self, request: Request, image: Image):
        """The daemon's side of POST /images/create (a SimPy generator)."""
        pull_start_s = self.env.now
        yield self.env.timeout(RESOLVE_REQUESTS * self.registry_request_s())
        request.record("resolve", pull_start_s, self.env.now)

        pending: list[simpy.Event] = []
        below: simpy.Event | None = None  # the layer underneath is registered
        for layer in image.layers:
            # Hold every layer for the pull's duration, so a concurrent rmi
            # cannot delete one this pull counts on.
            self.store.hold_layer(layer.name)
            if self.store.has_layer(layer.name):
                below = None  # "Already exists"
                continue
            transfer = self._transfers.get(layer.name)
            if transfer is None:
                transfer = self._start_transfer(request, layer, below)
            pending.append(transfer.registered)
            below = transfer.registered
        if pending:
            yield self.env.all_of(pending)
        yield self.env.timeout(self.costs.pull_fixed_s)
        self.store.add_image(image)
        for layer in image.layers:
            self.store.release_layer(layer.name)  # the image record now holds them
        request.record("pull", pull_start_s, self.env.now)

    def _start_transfer(self, request: Request, layer: Layer,
                        below: simpy.Event | None) -> LayerTransfer:
        transfer = LayerTransfer(layer, request, self.env.event())
        self._transfers[layer.name] = transfer
        # Queue for a slot now, not when the process first runs, so that the
        # pool grants slots in exactly this order: bottom layer first.
        slot = self.slots.request()
        self.env.process(self._fetch(transfer, slot, below))
        return transfer

    def _fetch(self, transfer: LayerTransfer, slot: simpy.resources.resource.Request,
               below: simpy.Event | None):
        layer, request = transfer.layer, transfer.owner
        yield slot
        download_start_s = self.env.now
        yield self.env.timeout(self.registry_request_s())  # the blob GET's round trip
        yield self.link.transfer(layer.compressed_bytes)
        self.slots.release(slot)  # the slot covers the download, not the extraction
        request.record("download", download_start_s, self.env.now,
                       layer.name, layer.compressed_bytes)

        if below is not None:
            yield below  # strictly bottom to top
        extract_start_s = self.env.now
        yield self.env.timeout(self.costs.extract_s(layer.size_bytes, layer.compression))
        request.record("extract", extract_start_s, self.env.now, layer.name, layer.size_bytes)

        self.store.add_layer(layer.name)
        del self._transfers[layer.name]
        transfer.registered.succeed()
