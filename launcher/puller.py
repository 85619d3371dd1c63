"""The daemon's pull manager: dockerd's download and extraction pipeline.

What it mirrors (and what model/daemon.py simulates):
- resolve: `/v2/` probe, manifest (via the index when multi-platform), config;
- one daemon-wide pool of `max_concurrent_downloads` slots (dockerd's default 3)
  shared by every concurrent pull; a download holds a slot from its request to
  its last verified byte;
- a layer already in the store is skipped ("Already exists"); a layer that
  another pull is fetching right now is waited for, not fetched twice;
- layers are extracted strictly bottom to top: layer k waits for layer k-1 to
  be registered, so extraction of early layers overlaps later downloads.
Each phase is recorded in the PhaseLog under the client's request tag.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from concurrent.futures import Future, wait
from typing import Callable

from launcher.phases import PhaseLog
from launcher.registry_client import (DOCKER_LIST, MANIFEST_ACCEPT, OCI_INDEX, PullError,
                                      RegistryClient, check_digest, parse_reference,
                                      pick_platform)
from launcher.store import LayerError, Store

Progress = Callable[[dict], None]
PROGRESS_EVERY_S = 0.1


def short_id(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


class PullManager:
    def __init__(self, store: Store, phases: PhaseLog, default_registry: str,
                 max_concurrent_downloads: int = 3):
        self.store = store
        self.phases = phases
        self.default_registry = default_registry
        self._slots = threading.Semaphore(max_concurrent_downloads)
        self._lock = threading.Lock()
        self._registering: dict[str, Future] = {}  # diff_id -> done when registered

    def pull(self, ref: str, tag: str, progress: Progress) -> dict:
        """Pull `ref` (normalised, with a tag) and return the stored image record."""
        began = time.monotonic()
        where = parse_reference(ref, self.default_registry)
        client = RegistryClient(where.registry)
        try:
            manifest, manifest_digest, config, config_digest = self._resolve(client, where, ref, tag)
        finally:
            client.close()
        # dockerd says this once the manifest is there: a pull that fails to
        # resolve has sent nothing yet and is answered with an HTTP error
        progress({"status": f"Pulling from {where.repository}", "id": where.tag})
        layers = manifest.get("layers", [])
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        if len(layers) != len(diff_ids):
            raise PullError(f"{ref}: manifest has {len(layers)} layers, config has {len(diff_ids)}")
        owned, waits = self._claim(layers, diff_ids, progress)
        cancel = threading.Event()
        fetched = {diff_id: self._start_download(where, desc, tag, progress, cancel)
                   for desc, diff_id in zip(layers, diff_ids) if diff_id in owned}
        try:
            for desc, diff_id in zip(layers, diff_ids):
                if diff_id in owned:
                    self._extract(desc, diff_id, fetched[diff_id], owned[diff_id], tag, progress)
                elif diff_id in waits:
                    waits[diff_id].result()
                    progress({"status": "Pull complete", "progressDetail": {},
                              "id": short_id(desc["digest"])})
        except BaseException:
            # like dockerd cancelling the pull's context: the other downloads stop,
            # and the client hears of the failure once they have cleaned up
            cancel.set()
            wait(fetched.values())
            raise
        finally:
            self._release(owned)
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
        path = f"/v2/{where.repository}/manifests/{where.tag}"
        body, media_type = client.get(path, MANIFEST_ACCEPT, what=f"manifest for {ref}")
        manifest = _json(body, f"manifest for {ref}")
        media_type = manifest.get("mediaType", media_type)
        digest = f"sha256:{hashlib.sha256(body).hexdigest()}"
        if media_type in (OCI_INDEX, DOCKER_LIST):
            entry = pick_platform(manifest, ref)
            digest = entry["digest"]
            body, _ = client.get(f"/v2/{where.repository}/manifests/{digest}", MANIFEST_ACCEPT,
                                 what=f"platform manifest for {ref}")
            check_digest(body, digest, f"manifest for {ref}")
            manifest = _json(body, f"manifest for {ref}")
        config_digest = manifest.get("config", {}).get("digest", "")
        config_bytes, _ = client.get(f"/v2/{where.repository}/blobs/{config_digest}",
                                     what=f"config of {ref}")
        check_digest(config_bytes, config_digest, f"config of {ref}")
        self.phases.record(tag, "resolve", began)
        return manifest, digest, _json(config_bytes, f"config of {ref}"), config_digest

    def _claim(self, layers: list[dict], diff_ids: list[str], progress: Progress):
        """Decide, under the lock, which layers this pull fetches itself and
        which it waits for because another pull is fetching them."""
        owned: dict[str, Future] = {}
        waits: dict[str, Future] = {}
        with self._lock:
            for desc, diff_id in zip(layers, diff_ids):
                layer_id = short_id(desc["digest"])
                if diff_id in owned or self.store.has_layer(diff_id):
                    progress({"status": "Already exists", "progressDetail": {}, "id": layer_id})
                elif diff_id in self._registering:
                    waits[diff_id] = self._registering[diff_id]
                    progress({"status": "Waiting", "progressDetail": {}, "id": layer_id})
                else:
                    owned[diff_id] = self._registering[diff_id] = Future()
                    progress({"status": "Pulling fs layer", "progressDetail": {}, "id": layer_id})
        return owned, waits

    def _release(self, owned: dict[str, Future]) -> None:
        with self._lock:
            for diff_id, future in owned.items():
                if not future.done():
                    future.set_exception(PullError(f"layer {diff_id[:19]}: the pull that fetched it failed"))
                self._registering.pop(diff_id, None)

    def _start_download(self, where, desc: dict, tag: str, progress: Progress,
                        cancel: threading.Event) -> Future:
        """Fetch one blob on its own thread once a download slot is free."""
        result: Future = Future()

        def run() -> None:
            try:
                result.set_result(self._download(where, desc, tag, progress, cancel))
            except BaseException as exc:  # handed to the pull's thread, which reports it
                result.set_exception(exc)

        threading.Thread(target=run, name=f"download-{short_id(desc['digest'])}", daemon=True).start()
        return result

    def _download(self, where, desc: dict, tag: str, progress: Progress,
                  cancel: threading.Event):
        digest, size = desc["digest"], int(desc["size"])
        layer_id = short_id(digest)
        with self._slots:
            if cancel.is_set():
                raise PullError(f"layer {layer_id}: download cancelled")
            began = time.monotonic()
            shown = [None]

            def on_bytes(received: int) -> None:
                if cancel.is_set():  # the pull failed elsewhere: stop, drop the temp file
                    raise PullError(f"layer {layer_id}: download cancelled")
                # like dockerd's progress reader: the first update at once, the
                # last one always, and at most one per PROGRESS_EVERY_S between
                now = time.monotonic()
                if shown[0] is None or received >= size or now - shown[0] >= PROGRESS_EVERY_S:
                    shown[0] = now
                    progress({"status": "Downloading", "id": layer_id,
                              "progressDetail": {"current": received, "total": size}})

            temp = self.store.new_temp()
            client = RegistryClient(where.registry)
            try:
                with open(temp, "wb") as out:
                    received = client.fetch_blob(where.repository, digest, out, size, on_bytes)
                progress({"status": "Verifying Checksum", "progressDetail": {}, "id": layer_id})
                self.store.commit_blob(temp, digest)
            finally:
                client.close()
                temp.unlink(missing_ok=True)
            self.phases.record(tag, "download", began, layer=layer_id, nbytes=received)
        progress({"status": "Download complete", "progressDetail": {}, "id": layer_id})
        return self.store.blob_path(digest)

    def _extract(self, desc: dict, diff_id: str, fetched: Future, registered: Future,
                 tag: str, progress: Progress) -> None:
        """Register one layer, after every layer below it (Docker's order)."""
        blob = fetched.result()
        layer_id = short_id(desc["digest"])
        began = time.monotonic()
        progress({"status": "Extracting", "progressDetail": {}, "id": layer_id})
        try:
            written = self.store.register_layer(blob, diff_id, desc.get("mediaType", ""))
        except LayerError as exc:
            raise PullError(f"layer {layer_id}: {exc}") from None
        self.phases.record(tag, "extract", began, layer=layer_id, nbytes=written)
        registered.set_result(True)
        progress({"status": "Pull complete", "progressDetail": {}, "id": layer_id})


def _json(body: bytes, what: str) -> dict:
    try:
        doc = json.loads(body)
    except ValueError:
        raise PullError(f"{what}: not valid JSON") from None
    if not isinstance(doc, dict):
        raise PullError(f"{what}: not a JSON object")
    return doc
