"""One image, published again in the other formats a registry may hold.

The builder writes what `docker push` of a BuildKit image leaves: an OCI
manifest over gzip layers.  Registries also hold Docker schema-2 manifests,
multi-platform indexes (OCI image index, Docker manifest list), and layers that
are zstd-compressed or plain tars, and a pull must cope with each.  `publish`
re-encodes an image already in the root, so tests can pull every combination
of the same content (same diff_ids, so the same rootfs):

- `manifest`: "oci" or "docker" (schema 2; the config then has Docker's type);
- `compression`: "gzip", "zstd" or "none"; "gzip-multi" and "zstd-multi" cut
  each layer in two members/frames, which readers must take as one stream;
- `index`: None, "oci" or "docker": put the manifest behind an index whose other
  entries are for other platforms (each a manifest of its own, whose config
  names that platform), as multi-arch images on Docker Hub are.
"""
from __future__ import annotations

import gzip
import json

import zstandard

from registry.builder import CONFIG_MEDIA_TYPE, go_arch
from registry.layout import RegistryLayout

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER_TYPES = {
    ("oci", "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    ("oci", "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    ("oci", "none"): "application/vnd.oci.image.layer.v1.tar",
    ("docker", "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ("docker", "zstd"): "application/vnd.docker.image.rootfs.diff.tar.zstd",
    ("docker", "none"): "application/vnd.docker.image.rootfs.diff.tar",
}
OTHER_PLATFORMS = (("arm64", "v8"), ("arm", "v7"), ("s390x", ""))


def _json(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def compress(tar: bytes, compression: str) -> bytes:
    kind, _, multi = compression.partition("-")
    pieces = [tar[:len(tar) // 2], tar[len(tar) // 2:]] if multi else [tar]
    if kind == "gzip":
        return b"".join(gzip.compress(p, compresslevel=1, mtime=0) for p in pieces)
    if kind == "zstd":
        compressor = zstandard.ZstdCompressor(level=3, write_checksum=True)
        return b"".join(compressor.compress(p) for p in pieces)
    if kind == "none":
        return tar
    raise ValueError(f"unknown compression {compression!r}")


def _descriptor(media_type: str, data: bytes, digest: str, **extra) -> dict:
    return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}


def publish(layout: RegistryLayout, source: tuple[str, str], dest: tuple[str, str], *,
            manifest: str = "oci", compression: str = "gzip", index: str | None = None) -> str:
    """Publish image `source` (name, tag) again as `dest` (name, tag); return the
    digest the tag points to (the index's, when there is one)."""
    digest = layout.resolve_tag(*source)
    original = json.loads(layout.blob_path(digest).read_bytes())
    config = layout.blob_path(original["config"]["digest"]).read_bytes()
    kind = compression.partition("-")[0]
    layers = []
    for layer in original["layers"]:
        tar = gzip.decompress(layout.blob_path(layer["digest"]).read_bytes())
        blob = compress(tar, compression)
        layers.append(_descriptor(LAYER_TYPES[(manifest, kind)], blob, layout.put_blob(blob)))

    def image_manifest(config_bytes: bytes) -> bytes:
        config_type = DOCKER_CONFIG if manifest == "docker" else CONFIG_MEDIA_TYPE
        return _json({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST if manifest == "docker" else OCI_MANIFEST,
                      "config": _descriptor(config_type, config_bytes, layout.put_blob(config_bytes)),
                      "layers": layers})

    body = image_manifest(config)
    top = layout.put_blob(body)
    if index is not None:
        entries = []
        for arch, variant in ((go_arch(), ""),) + OTHER_PLATFORMS:
            if arch == go_arch() and entries:
                continue  # this machine's platform is the first entry already
            if entries:  # another platform: its own config and manifest
                other = json.loads(config)
                other["architecture"] = arch
                other_body = image_manifest(_json(other))
            else:
                other_body = body
            platform = {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {})}
            media_type = DOCKER_MANIFEST if manifest == "docker" else OCI_MANIFEST
            entries.append(_descriptor(media_type, other_body, layout.put_blob(other_body), platform=platform))
        entries.reverse()  # this machine's entry last: a reader must look, not take the first
        index_type = DOCKER_LIST if index == "docker" else OCI_INDEX
        top = layout.put_blob(_json({"schemaVersion": 2, "mediaType": index_type, "manifests": entries}))
    layout.ensure_repository(dest[0])
    layout.set_tag(dest[0], dest[1], top)
    return top
