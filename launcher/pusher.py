"""`docker push`: an image from the store to a registry (OCI distribution API).

What dockerd does, and so docksim: for each layer, top first, `HEAD` the blob in
the target repository and skip it if the registry has it ("Layer already
exists"); otherwise `POST /v2/<name>/blobs/uploads/`, then one monolithic
`PUT <location>?digest=<digest>` with the whole blob ("Pushing" with progress,
then "Pushed"); up to 5 layers at once (dockerd's max-concurrent-uploads); then
the config blob the same way, and finally `PUT /v2/<name>/manifests/<tag>` with a
freshly written manifest, as dockerd writes a new schema-2 manifest on every push
(an OCI one here if a layer is not gzip, which schema 2 cannot describe).  The
last message is `TAG: digest: sha256:... size: N`.

The layer blobs are the compressed ones the pull kept; which blob holds which
layer (dockerd's `v2metadata-by-diffid`) is found by hashing their uncompressed
content once (gzip or zstd).  The config must be pushed byte for byte, since its digest is the
image id: docksim finds those bytes in the store or re-creates them with the
serialisations registries' clients use, checking the digest.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable
from urllib.parse import urljoin, urlsplit

from launcher.decompress import BrokenData, TarStream
from launcher.manifest import layer_compression
from launcher.registry_client import parse_reference
from launcher.store import Store

Progress = Callable[[dict], None]
MAX_CONCURRENT_UPLOADS = 5
TIMEOUT_S = 60
CHUNK = 1 << 20
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
             "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
             "none": "application/vnd.oci.image.layer.v1.tar"}


class PushError(Exception):
    def __init__(self, message: str, status: int = 500):
        super().__init__(message)
        self.status = status


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Registry:
    """One connection to the target registry; requests follow `Location`s."""

    def __init__(self, base_url: str):
        self.base = base_url
        parts = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port or 80,
                                               timeout=TIMEOUT_S, blocksize=CHUNK)

    def close(self) -> None:
        self.conn.close()

    def call(self, method: str, url: str, body=None, headers: dict | None = None,
             ok: tuple[int, ...] = (200, 201, 202)) -> http.client.HTTPResponse:
        target = urljoin(self.base + "/", url)
        parts = urlsplit(target)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            raise PushError(f"{method} {target}: {exc}") from None
        if resp.status == 401:
            raise PushError(f"{target}: authentication required (docksim pushes without "
                            "credentials)", 401)
        if resp.status not in ok:
            raise PushError(f"{method} {target}: {resp.status} {data[:200].decode(errors='replace')}")
        return resp

    def has_blob(self, repo: str, digest: str) -> bool:
        return self.call("HEAD", f"/v2/{repo}/blobs/{digest}", ok=(200, 404)).status == 200

    def upload(self, repo: str, digest: str, size: int, body) -> None:
        """The monolithic upload: POST for a session, PUT the bytes with ?digest=."""
        started = self.call("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
        location = started.getheader("Location")
        if not location:
            raise PushError(f"{self.base}: upload session without a Location")
        self.call("PUT", location + ("&" if "?" in location else "?") + f"digest={digest}",
                  body=body, headers={"Content-Type": "application/octet-stream",
                                      "Content-Length": str(size)}, ok=(201,))


class _Counting:
    """A file read by http.client in chunks, reporting bytes sent."""

    def __init__(self, path: Path, on_bytes: Callable[[int], None]):
        self._file = open(path, "rb")
        self._sent = 0
        self._on_bytes = on_bytes

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        if data:
            self._sent += len(data)
            self._on_bytes(self._sent)
        return data

    def close(self) -> None:
        self._file.close()


class Pusher:
    def __init__(self, store: Store, default_registry: str):
        self.store = store
        self.default_registry = default_registry
        self._layer_blobs: dict[str, tuple[str, int, str]] = {}  # diff_id -> digest, size, compression
        self._hashed: set[str] = set()
        self._lock = threading.Lock()

    def push(self, ref: str, progress: Progress) -> str:
        """Push the local image ``ref`` (name:tag) to the registry its name names;
        returns the manifest digest."""
        image = self.store.get_image(ref)
        if image is None:
            raise PushError(f"An image does not exist locally with the tag: {ref.rsplit(':', 1)[0]}", 404)
        where = parse_reference(ref, self.default_registry)
        progress({"status": f"The push refers to repository [{ref.rsplit(':', 1)[0]}]"})
        layers = [(diff_id, *self._blob_for(diff_id)) for diff_id in image["diff_ids"]]
        config = self._config_bytes(image)
        top_first = list(reversed(layers))
        for diff_id, *_rest in top_first:
            progress({"status": "Preparing", "progressDetail": {}, "id": short(diff_id)})
        for diff_id, *_rest in top_first[MAX_CONCURRENT_UPLOADS:]:
            progress({"status": "Waiting", "progressDetail": {}, "id": short(diff_id)})
        with ThreadPoolExecutor(MAX_CONCURRENT_UPLOADS) as pool:
            for done in [pool.submit(self._push_layer, where, layer, progress) for layer in top_first]:
                done.result()
        registry = _Registry(where.registry)
        try:
            if not registry.has_blob(where.repository, image["id"]):
                registry.upload(where.repository, image["id"], len(config), config)
            manifest, media_type = self._manifest(image["id"], len(config), layers)
            answer = registry.call("PUT", f"/v2/{where.repository}/manifests/{where.tag}",
                                   body=manifest, headers={"Content-Type": media_type}, ok=(201,))
        finally:
            registry.close()
        digest = answer.getheader("Docker-Content-Digest") or _sha256(manifest)
        progress({"status": f"{where.tag}: digest: {digest} size: {len(manifest)}"})
        progress({"progressDetail": {}, "aux": {"Tag": where.tag, "Digest": digest,
                                                "Size": len(manifest)}})
        return digest

    def _push_layer(self, where, layer: tuple, progress: Progress) -> None:
        diff_id, digest, size, _ = layer
        layer_id = short(diff_id)
        registry = _Registry(where.registry)
        try:
            if registry.has_blob(where.repository, digest):
                progress({"status": "Layer already exists", "progressDetail": {}, "id": layer_id})
                return

            def on_bytes(sent: int) -> None:
                progress({"status": "Pushing", "id": layer_id,
                          "progressDetail": {"current": sent, "total": size}})

            body = _Counting(self.store.blob_path(digest), on_bytes)
            try:
                registry.upload(where.repository, digest, size, body)
            finally:
                body.close()
            progress({"status": "Pushed", "progressDetail": {}, "id": layer_id})
        finally:
            registry.close()

    def _manifest(self, config_digest: str, config_size: int, layers: list) -> tuple[bytes, str]:
        oci = any(compression != "gzip" for *_, compression in layers)
        media = OCI_MANIFEST if oci else DOCKER_MANIFEST
        doc = {"schemaVersion": 2, "mediaType": media,
               "config": {"mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
                          "size": config_size, "digest": config_digest},
               "layers": [{"mediaType": OCI_LAYER[c] if oci else DOCKER_LAYER_GZIP,
                           "size": size, "digest": digest} for _, digest, size, c in layers]}
        return json.dumps(doc, indent=3).encode(), media  # dockerd indents with 3 spaces

    def _config_bytes(self, image: dict) -> bytes:
        if self.store.has_blob(image["id"]):
            return self.store.blob_path(image["id"]).read_bytes()
        config = image["config"]
        compact = json.dumps(config, separators=(",", ":"))
        for candidate in (json.dumps(config, sort_keys=True, separators=(",", ":")), compact,
                          json.dumps(config, separators=(",", ":"), ensure_ascii=False),
                          compact.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")):
            raw = candidate.encode()
            if _sha256(raw) == image["id"]:
                return raw
        raise PushError(f"image {image['id'][:19]}: the store does not keep the config's "
                        "original bytes, and they could not be re-created")

    def _blob_for(self, diff_id: str) -> tuple[str, int, str]:
        """(blob digest, size, compression) of the blob that unpacks to ``diff_id``."""
        with self._lock:
            if diff_id not in self._layer_blobs:
                self._scan(diff_id)
            if diff_id not in self._layer_blobs:
                raise PushError(f"layer {short(diff_id)}: no blob of it is in the store "
                                "(docksim pushes only layers it pulled)")
            return self._layer_blobs[diff_id]

    def _scan(self, wanted: str) -> None:
        """Hash the uncompressed content of the store's blobs until ``wanted`` is found."""
        if self.store.has_blob(wanted):  # an uncompressed layer: blob digest = diff_id
            self._layer_blobs[wanted] = (wanted, self.store.blob_path(wanted).stat().st_size, "none")
            return
        blobs = self.store.blob_path("sha256:" + "0" * 64).parent
        for path in sorted(blobs.iterdir()):
            digest = "sha256:" + path.name
            if digest in self._hashed:
                continue
            self._hashed.add(digest)
            with open(path, "rb") as f:
                compression = layer_compression("", f.read(4))
                if not compression:
                    continue  # not a compressed layer (an uncompressed one is found above)
                f.seek(0)
                tar = TarStream(f.read, compression)
                try:
                    tar.drain()
                except (BrokenData, OSError, ValueError):
                    continue
            self._layer_blobs.setdefault(tar.diff_id, (digest, path.stat().st_size, compression))
            if tar.diff_id == wanted:
                return
