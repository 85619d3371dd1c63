"""The daemon's pull manager: resolve, download, extract, register.

What it models (dockerd's distribution code and its layer download manager):

* ``resolve``: before any layer, the puller asks the registry three things in
  sequence -- ``GET /v2/`` (API probe), the manifest, the image config.  Each
  is one round trip plus the registry's handling time (``model/registry.py``:
  also token auth, its workers, and the 429 of a rate limit, which fails the
  pull at once).  A pull of an image whose layers are all present still
  resolves: Docker always checks the tag.
* Downloads are *transfers* keyed by layer.  A layer already registered is
  skipped ("Already exists"); a layer another pull is already fetching is not
  fetched again -- the second pull watches the first pull's transfer.
* All transfers of the daemon share one pool of ``max-concurrent-downloads``
  slots, granted first come first served; a pull queues its missing layers
  bottom first, so they start in layer order as slots free up.  A slot is
  held for the blob GET only (request round trip + bytes over the network,
  including retries: ``model/sources.py``), where the bytes come from is the
  source's business (registry, mirror or peers).
* Extraction is strictly bottom to top: layer k is applied when its blob is
  downloaded *and* layer k-1 is registered, so extracting early layers
  overlaps downloading later ones.  ``[daemon] extract = "parallel"`` drops
  the order (each layer extracts once downloaded, as snapshotters that unpack
  layers in parallel do).  With ``[daemon] cores``, extractions take one core
  each (gunzip is single-threaded) and queue for a free one.  The transfer
  (and its rows) belong to the request whose pull started it.
* A transfer that fails (every attempt failed) fails every pull waiting for
  it, and the layers above it; the next pull starts it afresh.
* The pull ends ``pull_fixed_s`` after its last layer is registered, when the
  image record is written.
* Pulls of one image at the same time contend for its manifest's write lock
  (``model/ingest.py``); that wait is part of their ``resolve``.
"""
from __future__ import annotations

from dataclasses import dataclass

import simpy

from model.costs import Costs
from model.ingest import ManifestIngest
from model.pagecache import PageCache
from model.recorder import Request
from model.store import ImageStore
from vocab.scenario import Image, Layer


@dataclass(eq=False)
class LayerTransfer:
    """One layer being fetched and registered, for every pull that needs it."""

    layer: Layer
    owner: Request           # the request whose pull started it; its rows go there
    registered: simpy.Event  # succeeds with True when the layer is in the store, False on failure
    downloaded_s: float = 0.0  # when its last byte arrived


class PullManager:
    """Pulls images into one node's store from a source (registry, mirror or peers)."""

    def __init__(self, env: simpy.Environment, costs: Costs, store: ImageStore,
                 source, node: str, max_concurrent_downloads: int,
                 serial_extract: bool = True, cores: int | None = None,
                 userland_layers: frozenset[str] = frozenset()):
        self.env = env
        self.userland_layers = userland_layers
        self.disk = PageCache(costs.dirty_expire_s)  # the node's: the daemon's unmounts sync it
        self.costs = costs
        self.store = store
        self.source = source
        self.node = node
        self.slots = simpy.Resource(env, capacity=max_concurrent_downloads)
        self.serial_extract = serial_extract
        self.cores = simpy.Resource(env, capacity=cores) if cores else None
        self._transfers: dict[str, LayerTransfer] = {}
        self.ingest = ManifestIngest(env, costs.manifest_lock_wait_s)

    def in_flight(self) -> tuple[str, ...]:
        """Layers being fetched right now (for tests and inspection)."""
        return tuple(self._transfers)

    def pull(self, request: Request, image: Image):
        """The daemon's side of POST /images/create (a SimPy generator); returns a status."""
        pull_start_s = self.env.now
        try:
            yield from self.ingest.begin(image.ref, request)
            status = yield from self.source.resolve(self.node, image)
            if status == 200:
                yield from self.ingest.write()
            request.record("resolve", pull_start_s, self.env.now)
            if status != 200:
                request.record("pull", pull_start_s, self.env.now)
                return status
            return (yield from self._fetch_layers(request, image, pull_start_s))
        finally:
            self.ingest.end(image.ref, request)

    def _fetch_layers(self, request: Request, image: Image, pull_start_s: float):
        """The layers of a resolved image, then its record; returns a status."""
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
            below = transfer.registered if self.serial_extract else None
        ok = True
        if pending:
            results = yield self.env.all_of(pending)
            ok = all(results.values())
        if ok:
            yield self.env.timeout(self.costs.pull_fixed_s)
            self.store.add_image(image)
            self.store.used(image.ref, self.env.now)
        for layer in image.layers:
            self.store.release_layer(layer.name)  # the image record now holds them
        request.record("pull", pull_start_s, self.env.now)
        return 200 if ok else 500

    def _start_transfer(self, request: Request, layer: Layer,
                        below: simpy.Event | None) -> LayerTransfer:
        transfer = LayerTransfer(layer, request, self.env.event())
        self._transfers[layer.name] = transfer
        # Queue for a slot now, not when the process first runs, so that the
        # pool grants slots in exactly this order: bottom layer first.
        slot = self.slots.request()
        self.env.process(self._fetch(transfer, slot, below))
        return transfer

    def _download(self, transfer: LayerTransfer, slot: simpy.resources.resource.Request):
        """One blob GET, holding a download slot; records the `download` row."""
        layer, request = transfer.layer, transfer.owner
        download_start_s = self.env.now
        ok = yield from self.source.download(self.node, layer)
        self.slots.release(slot)  # the slot covers the download, not the extraction
        # bytes on the wire: retries and discarded downloads add theirs (sources.Fetched)
        request.record("download", download_start_s, self.env.now,
                       layer.name, round(getattr(ok, "wire_bytes", layer.compressed_bytes)))
        ok = bool(ok)
        transfer.downloaded_s = self.env.now
        return ok

    def _fetch(self, transfer: LayerTransfer, slot: simpy.resources.resource.Request,
               below: simpy.Event | None):
        """Download one layer, then register it (after the layer below, when serial).

        An engine that unpacks while the bytes arrive (docksim's; costs.extract_streams)
        starts extracting once the download has started and the layer below is
        registered; the last bytes still need their share of work and the layer
        its registration, so
            extract_end = max(extract_start + extract_s, download_end + extract_fixed_s).
        dockerd writes the blob to disk first and extracts it afterwards.  A bottom
        layer's extract_s includes unpacking its userland (costs.userland_extract_s),
        which comes first in the tar, so it never delays the end of a download.
        """
        layer, request = transfer.layer, transfer.owner
        yield slot
        download = self.env.process(self._download(transfer, slot))
        ok = True
        if not self.costs.extract_streams:
            ok = yield download
        if ok and below is not None:
            ok = yield below  # strictly bottom to top
        if not ok:
            if not download.triggered:
                yield download
            del self._transfers[layer.name]
            transfer.registered.succeed(False)
            return

        core = None
        if self.cores is not None:
            core = self.cores.request()
            yield core
        extract_start_s = self.env.now
        extract_s = self.costs.extract_s(layer.size_bytes, layer.compression)
        if layer.name in self.userland_layers:
            extract_s += self.costs.userland_extract_s
        yield self.env.timeout(extract_s)
        if core is not None:
            self.cores.release(core)
        ok = yield download  # already done unless the bytes arrive slower than they unpack
        if not ok:
            del self._transfers[layer.name]
            transfer.registered.succeed(False)
            return
        finish_s = transfer.downloaded_s + self.costs.extract_fixed_s
        if self.costs.extract_streams and finish_s > self.env.now:
            yield self.env.timeout(finish_s - self.env.now)
        request.record("extract", extract_start_s, self.env.now, layer.name, layer.size_bytes)
        self.disk.write(self.env.now, layer.size_bytes)  # the layer's files, not yet on disk

        self.store.add_layer(layer.name)
        del self._transfers[layer.name]
        transfer.registered.succeed(True)
