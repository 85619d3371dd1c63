"""What a registry checks before it accepts a pushed manifest (`PUT /v2/<name>/manifests/<ref>`).

As CNCF distribution does it for the four manifest types a pull understands:

- the body is at most 4 MiB of JSON, an object with `schemaVersion` 2;
- its type is the `mediaType` inside it, which must agree with the request's
  Content-Type when both are given (OCI lets a manifest leave `mediaType` out;
  then the Content-Type, and failing that its keys, tell);
- an image manifest's config and layers, and an index's manifests, are
  descriptors with a valid digest and a size; every one of them must already
  be in the registry (MANIFEST_BLOB_UNKNOWN, one error per missing blob), with
  the size the descriptor says (SIZE_INVALID).  Foreign and non-distributable
  layers that name URLs are not required, as distribution allows.
"""
from __future__ import annotations

import json

from registry.layout import RegistryLayout, valid_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_EXTERNAL_LAYER_MARKERS = ("foreign", "nondistributable")


class ManifestProblem(Exception):
    """Why a manifest is refused: a list of (status, code, message, detail)."""

    def __init__(self, errors: list[tuple[int, str, str, object]]):
        super().__init__(errors[0][2])
        self.errors = errors


def _invalid(message: str, detail: object = None) -> ManifestProblem:
    return ManifestProblem([(400, "MANIFEST_INVALID", message, detail)])


def media_type_of(document: dict, content_type: str = "") -> str:
    """The manifest's type: its own `mediaType`, else the Content-Type, else its keys."""
    declared = document.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    content_type = content_type.split(";")[0].strip()
    if content_type in IMAGE_TYPES + INDEX_TYPES:
        return content_type
    return OCI_INDEX if "manifests" in document else OCI_MANIFEST


def parse(body: bytes, content_type: str) -> tuple[dict, str]:
    """The manifest document and its media type, or ManifestProblem."""
    try:
        document = json.loads(body)
    except ValueError:
        raise _invalid("manifest is not valid JSON") from None
    if not isinstance(document, dict):
        raise _invalid("manifest is not a JSON object")
    if document.get("schemaVersion") != 2:
        raise _invalid("only schemaVersion 2 manifests are accepted",
                       {"schemaVersion": document.get("schemaVersion")})
    declared = document.get("mediaType")
    content_type = content_type.split(";")[0].strip()
    if declared and content_type and declared != content_type and content_type in IMAGE_TYPES + INDEX_TYPES:
        raise _invalid("mediaType does not match the Content-Type",
                       {"mediaType": declared, "contentType": content_type})
    media_type = media_type_of(document, content_type)
    if media_type not in IMAGE_TYPES + INDEX_TYPES:
        raise _invalid("unsupported manifest media type", {"mediaType": media_type})
    return document, media_type


def _descriptor(value: object, where: str) -> tuple[str, int]:
    if not isinstance(value, dict):
        raise _invalid(f"{where} is not a descriptor")
    digest, size = value.get("digest"), value.get("size")
    if not isinstance(digest, str) or not valid_digest(digest):
        raise _invalid(f"{where} has an invalid digest", {"digest": digest})
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where} has an invalid size", {"size": size})
    return digest, size


def referenced(document: dict, media_type: str) -> list[tuple[str, int, str]]:
    """(digest, size, where) of every blob the manifest needs in the registry."""
    needed = []
    if media_type in IMAGE_TYPES:
        needed.append((*_descriptor(document.get("config"), "config"), "config"))
        layers = document.get("layers")
        if not isinstance(layers, list):
            raise _invalid("layers is not a list")
        for i, layer in enumerate(layers):
            digest, size = _descriptor(layer, f"layers[{i}]")
            kind = str(layer.get("mediaType", ""))
            if layer.get("urls") and any(m in kind for m in _EXTERNAL_LAYER_MARKERS):
                continue  # fetched from its URLs, not from this registry
            needed.append((digest, size, f"layers[{i}]"))
    else:
        entries = document.get("manifests")
        if not isinstance(entries, list):
            raise _invalid("manifests is not a list")
        for i, entry in enumerate(entries):
            needed.append((*_descriptor(entry, f"manifests[{i}]"), f"manifests[{i}]"))
    return needed


def check(body: bytes, content_type: str, layout: RegistryLayout) -> str:
    """Validate a pushed manifest against the registry; return its media type."""
    if len(body) > MAX_MANIFEST_BYTES:
        raise ManifestProblem([(413, "SIZE_INVALID", "manifest is larger than 4 MiB",
                                {"size": len(body)})])
    document, media_type = parse(body, content_type)
    errors = []
    for digest, size, where in referenced(document, media_type):
        try:
            actual = layout.blob_path(digest).stat().st_size
        except FileNotFoundError:
            errors.append((400, "MANIFEST_BLOB_UNKNOWN", f"{where}: blob unknown to registry",
                           {"digest": digest}))
            continue
        if actual != size:
            errors.append((400, "SIZE_INVALID", f"{where}: size does not match the blob",
                           {"digest": digest, "size": size, "actual": actual}))
    if errors:
        raise ManifestProblem(errors)
    return media_type
