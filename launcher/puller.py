"""The daemon's pull manager: dockerd's download and extraction pipeline, streamed.

What it mirrors (and what model/daemon.py simulates):
- resolve: `/v2/` probe (and a token when the registry asks for one), the
  manifest (via the index or manifest list when multi-platform), the config;
- one daemon-wide pool of `max_concurrent_downloads` slots (dockerd's default 3)
  shared by every concurrent pull; a download holds a slot from its first
  request to its last verified byte, retries and their back-off included;
- a layer already in the store is skipped ("Already exists"); a layer that
  another pull is fetching right now is waited for, not fetched twice;
- `extract="serial"` (the default, Docker's order): layer k is registered after
  layer k-1; `extract="parallel"`: every layer is unpacked as soon as its bytes
  arrive, in any order, because each layer is a directory of its own (an overlay
  lowerdir) and no layer's content depends on another's.

Where docksim differs from dockerd: the pipeline streams.  Bytes read from the
socket are hashed and written to a spool (`launcher.spool`), and the unpacker
follows the spool: it decompresses and unpacks while the download is still
under way, instead of waiting for the whole blob.  The blob digest and the
diff_id are both checked; a layer is registered only after both matched.

The phases, when they overlap (the SimPy model and the trace rely on these):
- `download`: from the blob's first request (once a slot is free) to its last
  byte verified against the digest; `bytes` = bytes read off the network;
- `extract`: from the moment the unpacker gets the layer's first bytes (in
  serial order: not before the layer below is registered) until the layer is
  registered; `bytes` = bytes of the files written.  So a layer's extract starts
  after its download starts and ends after its download ends, and the two
  overlap by however long the unpacker kept up with the network;
- `resolve` and `pull` as in dockerd.
A failed pull leaves no image and nothing of the layer that failed; layers it
had completely registered stay (containerd keeps finished content too) and are
"Already exists" on the next try.
The progress stream keeps Docker's per-layer order (Downloading ... Download
complete, Extracting, Pull complete): the unpacker works silently until its
download is complete.
"""
from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import Future, wait
from typing import Callable

from launcher.auth import TokenSource
from launcher.download import BlobDownload, RetryPolicy
from launcher.manifest import (INDEX_TYPES, MANIFEST_ACCEPT, LayerDesc, ManifestError, image_layers,
                               parse_config, parse_document, pick_platform)
from launcher.phases import PhaseLog
from launcher.registry_client import PullError, RegistryClient, check_digest, parse_reference
from launcher.spool import Spool, SpoolRestarted
from launcher.store import LayerError, Store

Progress = Callable[[dict], None]
PROGRESS_EVERY_S = 0.1
EXTRACT_MODES = ("serial", "parallel")


def short_id(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _spawn(name: str, work: Callable[[], object]) -> Future:
    """Run `work` on a thread of its own; its result or exception in a Future."""
    result: Future = Future()

    def run() -> None:
        try:
            result.set_result(work())
        except BaseException as exc:  # handed to the pull's thread, which reports it
            result.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return result


class _Throttle:
    """dockerd's progress reader: the first update at once, then at most one per
    PROGRESS_EVERY_S (the caller sends the last one itself)."""

    def __init__(self) -> None:
        self.last: float | None = None

    def due(self) -> bool:
        now = time.monotonic()
        if self.last is None or now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            return True
        return False


class _LayerJob:
    """One layer this pull fetches: its spool, download and registration."""

    def __init__(self, desc: LayerDesc, store: Store, registered: Future):
        self.desc = desc
        self.id = short_id(desc.digest)
        self.spool = Spool(store.new_temp())
        self.registered = registered          # shared with pulls waiting for this layer
        self.downloaded = threading.Event()   # "Download complete" was sent
        self.download: Future | None = None
        self.extraction: Future | None = None


class PullManager:
    def __init__(self, store: Store, phases: PhaseLog, default_registry: str,
                 max_concurrent_downloads: int = 3, *, extract: str = "serial",
                 retry: RetryPolicy | None = None, tokens: TokenSource | None = None):
        if extract not in EXTRACT_MODES:
            raise ValueError(f"extract must be one of {EXTRACT_MODES}, not {extract!r}")
        self.store = store
        self.phases = phases
        self.default_registry = default_registry
        self.extract_mode = extract
        self.retry = retry or RetryPolicy()
        self.tokens = tokens or TokenSource()
        self._slots = threading.Semaphore(max_concurrent_downloads)
        self._lock = threading.Lock()
        self._registering: dict[str, Future] = {}  # diff_id -> done when registered

    def pull(self, ref: str, tag: str, progress: Progress) -> dict:
        """Pull `ref` (normalised, with a tag) and return the stored image record."""
        began = time.monotonic()
        where = parse_reference(ref, self.default_registry)
        client = RegistryClient(where.registry, where.repository, self.tokens)
        try:
            manifest, manifest_digest, config, config_digest = self._resolve(client, where, ref, tag)
            layers = image_layers(manifest, config, ref)
        except ManifestError as exc:
            raise PullError(str(exc)) from None
        finally:
            client.close()
        # dockerd says this once the manifest is there: a pull that fails to
        # resolve has sent nothing yet and is answered with an HTTP error
        progress({"status": f"Pulling from {where.repository}", "id": where.tag})
        jobs, waits = self._claim(layers, progress)
        try:
            self._fetch_and_register(client, layers, jobs, waits, tag, progress)
        finally:
            self._release(jobs)
        diff_ids = [layer.diff_id for layer in layers]
        previous = self.store.get_image(ref)
        up_to_date = previous is not None and previous.get("manifest_digest") == manifest_digest
        record = {"id": config_digest, "ref": ref, "manifest_digest": manifest_digest,
                  "config": config, "diff_ids": diff_ids,
                  # dockerd's image size: the layers' unpacked content, not the download
                  "size": sum(self.store.layer_size(d) for d in dict.fromkeys(diff_ids)),
                  "created": previous.get("created", time.time()) if up_to_date else time.time()}
        self.store.put_image(ref, record)
        self.phases.record(tag, "pull", began)
        progress({"status": f"Digest: {manifest_digest}"})
        progress({"status": f"Status: Image is up to date for {ref}" if up_to_date
                  else f"Status: Downloaded newer image for {ref}"})
        return record

    def _resolve(self, client: RegistryClient, where, ref: str, tag: str):
        began = time.monotonic()
        client.probe()
        body, content_type = client.get(f"/v2/{where.repository}/manifests/{where.tag}",
                                        MANIFEST_ACCEPT, what=f"manifest for {ref}")
        manifest, media_type = parse_document(body, content_type, f"manifest for {ref}")
        digest = f"sha256:{hashlib.sha256(body).hexdigest()}"
        if media_type in INDEX_TYPES:
            digest = str(pick_platform(manifest, ref).get("digest", ""))
            body, content_type = client.get(f"/v2/{where.repository}/manifests/{digest}",
                                            MANIFEST_ACCEPT, what=f"platform manifest for {ref}")
            check_digest(body, digest, f"manifest for {ref}")
            manifest, media_type = parse_document(body, content_type, f"manifest for {ref}")
            if media_type in INDEX_TYPES:
                raise PullError(f"manifest for {ref}: an index inside an index is not supported")
        config_digest = str((manifest.get("config") or {}).get("digest", ""))
        config_bytes, _ = client.get(f"/v2/{where.repository}/blobs/{config_digest}",
                                     what=f"config of {ref}")
        check_digest(config_bytes, config_digest, f"config of {ref}")
        config = parse_config(config_bytes, f"config of {ref}")
        # kept like containerd's content store does (docker push and save read them)
        self.store.put_blob(body, digest)
        self.store.put_blob(config_bytes, config_digest)
        self.phases.record(tag, "resolve", began)
        return manifest, digest, config, config_digest

    def _claim(self, layers: list[LayerDesc], progress: Progress):
        """Decide, under the lock, which layers this pull fetches itself and
        which it waits for because another pull is fetching them."""
        jobs: dict[str, _LayerJob] = {}
        waits: dict[str, Future] = {}
        with self._lock:
            for layer in layers:
                layer_id = short_id(layer.digest)
                if layer.diff_id in jobs or self.store.has_layer(layer.diff_id):
                    progress({"status": "Already exists", "progressDetail": {}, "id": layer_id})
                elif layer.diff_id in self._registering:
                    waits[layer.diff_id] = self._registering[layer.diff_id]
                    progress({"status": "Waiting", "progressDetail": {}, "id": layer_id})
                else:
                    registered = self._registering[layer.diff_id] = Future()
                    jobs[layer.diff_id] = _LayerJob(layer, self.store, registered)
                    progress({"status": "Pulling fs layer", "progressDetail": {}, "id": layer_id})
        return jobs, waits

    def _release(self, jobs: dict[str, _LayerJob]) -> None:
        with self._lock:
            for diff_id, job in jobs.items():
                if not job.registered.done():
                    job.registered.set_exception(
                        PullError(f"layer {diff_id[:19]}: the pull that fetched it failed"))
                self._registering.pop(diff_id, None)
                job.spool.close()
                job.spool.path.unlink(missing_ok=True)  # committed blobs were renamed away

    def _fetch_and_register(self, client: RegistryClient, layers: list[LayerDesc],
                            jobs: dict[str, _LayerJob], waits: dict[str, Future],
                            tag: str, progress: Progress) -> None:
        cancel = threading.Event()
        for job in jobs.values():
            job.download = _spawn(f"download-{job.id}", lambda job=job: self._download(
                client, job, tag, progress, cancel))
            if self.extract_mode == "parallel":
                job.extraction = _spawn(f"extract-{job.id}", lambda job=job: self._extract(
                    job, tag, progress))
        try:
            for layer in layers:
                job = jobs.get(layer.diff_id)
                if job is not None:
                    if job.extraction is None:  # serial: in this thread, bottom to top
                        job.extraction = Future()
                        try:
                            job.extraction.set_result(self._extract(job, tag, progress))
                        except BaseException as exc:
                            job.extraction.set_exception(exc)
                    job.extraction.result()
                elif layer.diff_id in waits:
                    waits[layer.diff_id].result()
                    progress({"status": "Pull complete", "progressDetail": {},
                              "id": short_id(layer.digest)})
        except BaseException as exc:
            # like dockerd cancelling the pull's context: the other downloads stop,
            # and the client hears of the failure once they have cleaned up
            cancel.set()
            for job in jobs.values():
                job.spool.fail(exc if isinstance(exc, PullError) else PullError(str(exc)))
            wait([f for job in jobs.values() for f in (job.download, job.extraction) if f])
            raise

    def _download(self, client: RegistryClient, job: _LayerJob, tag: str, progress: Progress,
                  cancel: threading.Event) -> None:
        size = job.desc.size
        throttle = _Throttle()

        def on_bytes(received: int) -> None:
            if received >= size or throttle.due():
                progress({"status": "Downloading", "id": job.id,
                          "progressDetail": {"current": received, "total": size}})

        def on_status(status: str) -> None:
            progress({"status": status, "progressDetail": {}, "id": job.id})

        try:
            with self._slots:
                began = time.monotonic()
                download = BlobDownload(client.sibling, job.desc.digest, size, job.spool,
                                        self.retry, cancel, on_bytes, on_status)
                wire_bytes = download.run()
                self.phases.record(tag, "download", began, layer=job.id, nbytes=wire_bytes)
        except BaseException as exc:
            job.spool.fail(exc)
            raise
        progress({"status": "Download complete", "progressDetail": {}, "id": job.id})
        job.downloaded.set()
        job.spool.finish()

    def _keep_blob(self, job: _LayerJob) -> None:
        """Once the blob's digest is verified, commit it to the store: before the
        layer takes its name, so that a registered layer always has its blob."""
        job.spool.wait_done()
        if not self.store.has_blob(job.desc.digest):
            self.store.commit_blob(job.spool.path, job.desc.digest)

    def _extract(self, job: _LayerJob, tag: str, progress: Progress) -> None:
        """Unpack and register one layer while (or after) its bytes arrive; when the
        download is discarded (its digest did not match), start over with the next."""
        began: float | None = None
        consumed = 0
        throttle = _Throttle()
        size = job.desc.size

        def read(n: int) -> bytes:
            nonlocal began, consumed
            data = job.spool.read(n)
            if began is None:
                began = time.monotonic()
            consumed += len(data)
            # silent until "Download complete", so clients see Docker's order
            if job.downloaded.is_set() and (consumed >= size or throttle.due()):
                progress({"status": "Extracting", "id": job.id,
                          "progressDetail": {"current": consumed, "total": size}})
            return data

        while True:
            try:
                written = self._register(job, read)
                break
            except SpoolRestarted:  # the half-unpacked layer is gone; the new bytes follow
                job.spool.rewind()
                consumed = 0
        if throttle.last is None:  # everything was read before the download was complete
            progress({"status": "Extracting", "id": job.id,
                      "progressDetail": {"current": consumed, "total": size}})
        self._keep_blob(job)  # if another pull registered the layer meanwhile
        self.phases.record(tag, "extract", began if began is not None else time.monotonic(),
                           layer=job.id, nbytes=written)
        job.registered.set_result(True)
        progress({"status": "Pull complete", "progressDetail": {}, "id": job.id})

    def _register(self, job: _LayerJob, read: Callable[[int], bytes]) -> int:
        """One try at unpacking the spool's bytes; SpoolRestarted when they were discarded."""
        try:
            # the verified blob is committed before the layer takes its name, so a
            # registered layer always has its blob (launcher/storecheck.py)
            return self.store.register_layer_from(read, job.desc.diff_id, job.desc.media_type,
                                                  before_commit=lambda: self._keep_blob(job),
                                                  blob_digest=job.desc.digest)
        except LayerError as exc:
            # Bad bytes are bad content too: a flipped byte breaks the gzip stream or
            # the tar long before the digest can be checked.  The download's verdict
            # decides: discarded and fetched again (SpoolRestarted), failed (its error),
            # or verified -- then the layer's content itself is bad.
            job.spool.wait_done()
            raise PullError(f"layer {job.id}: {exc}") from None
