"""Image manifests as a pull reads them: media types, the platform choice, layers.

A registry answers `GET /v2/<name>/manifests/<tag>` with one of four documents
(OCI image spec and Docker's "Image Manifest V2, Schema 2"):

    OCI image index / Docker manifest list   one entry per platform -> pick ours
    OCI image manifest / Docker schema 2      a config blob and the layer blobs

dockerd and containerd accept all four and pick the index entry whose platform
is `linux/<GOARCH of this machine>` (plus the ARM variant when there is one).
Layers are tar archives, gzip- or zstd-compressed or plain; the media type
says which, as containerd reads it.  Docker schema 1 (signed, 2015) is refused
with a clear message, as current dockerd does by default.
"""
from __future__ import annotations

import json
import platform
from dataclasses import dataclass

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))

# layer media type -> compression ("gzip", "zstd" or "" for a plain tar)
LAYER_COMPRESSION = {
    "application/vnd.oci.image.layer.v1.tar": "",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar": "",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd": "zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
}
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# `uname -m` -> (GOARCH, variant) as image platforms name them
GO_ARCH = {"x86_64": ("amd64", ""), "amd64": ("amd64", ""), "aarch64": ("arm64", ""),
           "arm64": ("arm64", ""), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
           "i386": ("386", ""), "i686": ("386", ""), "ppc64le": ("ppc64le", ""),
           "s390x": ("s390x", ""), "riscv64": ("riscv64", "")}


class ManifestError(ValueError):
    """A manifest the pull cannot use; the text says why."""


def host_platform(machine: str | None = None) -> tuple[str, str]:
    """(architecture, variant) of this machine, as an image index names it."""
    machine = machine or platform.machine()
    return GO_ARCH.get(machine, (machine, ""))


def host_arch() -> str:
    return host_platform()[0]


def layer_compression(media_type: str, head: bytes = b"") -> str:
    """"gzip", "zstd" or "" for a layer; with no media type, from the magic bytes
    (as Docker's DetectCompression does).  ValueError for an unknown type."""
    if media_type in LAYER_COMPRESSION:
        return LAYER_COMPRESSION[media_type]
    if not media_type:
        if head.startswith(GZIP_MAGIC):
            return "gzip"
        return "zstd" if head.startswith(ZSTD_MAGIC) else ""
    raise ValueError(f"unsupported layer media type {media_type!r}")


def parse_document(body: bytes, content_type: str, what: str) -> tuple[dict, str]:
    """A manifest or index as JSON, and its media type: the document's own
    `mediaType`, else the response's Content-Type, else guessed from its keys
    (OCI allows `mediaType` to be left out)."""
    doc = json_object(body, what)
    media_type = doc.get("mediaType") or content_type.split(";")[0].strip()
    if media_type in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise ManifestError(f"{what}: Docker schema 1 manifests are not supported "
                            "(push the image again with a current client)")
    if media_type not in INDEX_TYPES + IMAGE_TYPES:
        if "manifests" in doc:
            media_type = OCI_INDEX
        elif "config" in doc and "layers" in doc:
            media_type = OCI_MANIFEST
        else:
            raise ManifestError(f"{what}: unsupported manifest type {media_type!r}")
    return doc, media_type


def json_object(body: bytes, what: str) -> dict:
    """A JSON object, or ManifestError naming `what`."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise ManifestError(f"{what}: not valid JSON") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{what}: not a JSON object")
    return doc


def parse_config(body: bytes, what: str) -> dict:
    """An image config: a JSON object (its rootfs.diff_ids are read by image_layers)."""
    return json_object(body, what)


def pick_platform(index: dict, what: str, machine: str | None = None) -> dict:
    """The index entry for linux on this machine's architecture: an exact variant
    match first, then an entry without variant (containerd's default matcher)."""
    arch, variant = host_platform(machine)
    candidates = []
    for entry in index.get("manifests", []):
        plat = entry.get("platform") or {}
        if plat.get("os") == "linux" and plat.get("architecture") == arch:
            candidates.append(entry)
    for entry in candidates:
        if (entry.get("platform") or {}).get("variant", "") == variant:
            return entry
    for entry in candidates:
        if not (entry.get("platform") or {}).get("variant") or not variant:
            return entry
    wanted = f"linux/{arch}" + (f"/{variant}" if variant else "")
    raise ManifestError(f"{what}: no matching manifest for {wanted} in the manifest list entries")


@dataclass(frozen=True)
class LayerDesc:
    """One layer of an image: its blob and what it unpacks to."""

    digest: str
    size: int
    media_type: str
    diff_id: str


def image_layers(manifest: dict, config: dict, what: str) -> list[LayerDesc]:
    """The manifest's layers paired with the config's diff_ids, bottom first."""
    layers = manifest.get("layers")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if not isinstance(layers, list) or not isinstance(diff_ids, list):
        raise ManifestError(f"{what}: manifest or config lists no layers")
    if len(layers) != len(diff_ids):
        raise ManifestError(f"{what}: manifest has {len(layers)} layers, config has {len(diff_ids)}")
    out = []
    for desc, diff_id in zip(layers, diff_ids):
        try:
            out.append(LayerDesc(str(desc["digest"]), int(desc["size"]),
                                 str(desc.get("mediaType", "")), str(diff_id)))
        except (KeyError, TypeError, ValueError):
            raise ManifestError(f"{what}: a layer descriptor lacks digest or size") from None
        if out[-1].size < 0:
            raise ManifestError(f"{what}: layer {out[-1].digest} has a negative size")
    return out
