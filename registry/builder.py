"""Build a scenario's images into a registry root, as `docker push` would leave them.

For every image the registry ends up holding what a real one holds after a push:
one gzip blob per layer, an OCI image config (platform, default command, the
diff_ids of the layers in order), an OCI image manifest naming config and layers
by digest and size, and a tag pointing at the manifest.  Layers are identified by
name in a scenario, so a layer shared by two images is one blob, pulled once.

Building a 100 MB layer takes a fraction of a second, but a lecture builds the
same layers again and again, so finished layer blobs can be kept in a cache
directory keyed by everything their bytes depend on.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from registry.content import EPOCH_S, FORMAT_VERSION, LayerContent, write_layer
from registry.layout import RegistryLayout, sha256_digest, write_atomic
from registry.userland import Userland, find_userland
from vocab.scenario import Image, Layer, Scenario

log = logging.getLogger(__name__)

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CREATED = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(EPOCH_S))
DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
DEFAULT_CMD = ("/bin/sh",)
# `uname -m` to the GOARCH names image configs use (what `docker pull` matches).
_GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
            "armv7l": "arm", "armv6l": "arm", "i386": "386", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


@dataclass(frozen=True)
class BuiltLayer:
    name: str
    digest: str             # sha256 of the gzip blob
    compressed_bytes: int   # blob size: bytes a pull downloads
    diff_id: str            # sha256 of the uncompressed tar
    tar_bytes: int
    content_bytes: int      # sum of the files' sizes
    userland: str | None    # "busybox", "host" or None (not a bottom layer)
    from_cache: bool


@dataclass(frozen=True)
class BuiltImage:
    ref: str
    manifest_digest: str
    manifest_bytes: int
    config_digest: str
    config_bytes: int
    layers: tuple[str, ...]  # layer names, bottom first
    compressed_bytes: int    # layer blobs only: what a cold pull downloads besides JSON
    content_bytes: int       # what extraction writes


@dataclass(frozen=True)
class BuildReport:
    images: dict[str, BuiltImage]
    layers: dict[str, BuiltLayer]
    warnings: list[str]


def go_arch(machine: str | None = None) -> str:
    machine = machine or platform.machine()
    return _GO_ARCH.get(machine, machine)


def _json_bytes(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _place(source: Path, layout: RegistryLayout, digest: str) -> None:
    """Put a copy of `source` into the root as blob `digest` (a hard link when possible)."""
    if layout.blob_path(digest).exists():
        return
    fd, temp = layout.new_temp_file()
    os.close(fd)
    try:
        os.unlink(temp)
        os.link(source, temp)
    except OSError:  # another file system, or links not allowed: copy
        shutil.copyfile(source, temp)
    layout.adopt_blob(temp, digest)


class _LayerCache:
    """Finished layer blobs under `cache_dir`, keyed by what their bytes depend on."""

    def __init__(self, cache_dir: Path):
        self.blobs = RegistryLayout(cache_dir)
        self.index = Path(cache_dir).resolve() / "layers"

    def _entry(self, layer: Layer, userland: Userland | None) -> Path:
        key = [FORMAT_VERSION, layer.name, repr(layer.size_mb), repr(layer.compression),
               userland.fingerprint() if userland else "none"]
        return self.index / (sha256_digest(_json_bytes({"key": key}))[7:] + ".json")

    def get(self, layer: Layer, userland: Userland | None) -> LayerContent | None:
        try:
            record = json.loads(self._entry(layer, userland).read_text())
            content = LayerContent(**{**record, "warnings": tuple(record["warnings"])})
            if self.blobs.blob_path(content.digest).stat().st_size == content.compressed_bytes:
                return content
        except (OSError, ValueError, TypeError, KeyError):
            pass  # absent or damaged: rebuild
        return None

    def put(self, layer: Layer, userland: Userland | None, content: LayerContent, blob: Path) -> None:
        _place(blob, self.blobs, content.digest)
        record = {**content.__dict__, "warnings": list(content.warnings)}
        # The record goes last: its presence says the blob is complete.
        write_atomic(self._entry(layer, userland), json.dumps(record, indent=1).encode())


def _build_layer(layer: Layer, userland: Userland | None, layout: RegistryLayout,
                 cache: _LayerCache | None) -> tuple[BuiltLayer, tuple[str, ...]]:
    started = time.perf_counter()
    content = cache.get(layer, userland) if cache else None
    from_cache = content is not None
    if content is not None:
        _place(cache.blobs.blob_path(content.digest), layout, content.digest)
    else:
        fd, temp = layout.new_temp_file()
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as out:
                content = write_layer(layer, userland, out)
            blob = layout.adopt_blob(temp, content.digest)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        if cache:
            cache.put(layer, userland, content, blob)
    log.info("layer %s: %d B content, %d B gzip (ratio %.2f), %s in %.2f s", layer.name,
             content.content_bytes, content.compressed_bytes,
             content.content_bytes / content.compressed_bytes,
             "from cache" if from_cache else "built", time.perf_counter() - started)
    built = BuiltLayer(layer.name, content.digest, content.compressed_bytes, content.diff_id,
                       content.tar_bytes, content.content_bytes,
                       userland.kind if userland else None, from_cache)
    return built, content.warnings


def _config(image: Image, layers: dict[str, BuiltLayer]) -> bytes:
    history = [{"created": CREATED,
                "created_by": f"docksim layer {layer.name}: {layer.size_mb:g} MB, "
                              f"compression {layer.compression:g}"} for layer in image.layers]
    return _json_bytes({
        "created": CREATED, "architecture": go_arch(), "os": "linux",
        "config": {"Env": list(DEFAULT_ENV), "Cmd": list(DEFAULT_CMD)},
        "rootfs": {"type": "layers", "diff_ids": [layers[layer.name].diff_id for layer in image.layers]},
        "history": history,
    })


def _manifest(config_digest: str, config: bytes, image: Image, layers: dict[str, BuiltLayer]) -> bytes:
    return _json_bytes({
        "schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": layers[layer.name].digest,
                    "size": layers[layer.name].compressed_bytes} for layer in image.layers],
    })


def build_images(scenario: Scenario, root: Path, cache_dir: Path | None = None, *,
                 userland: Userland | None = None) -> BuildReport:
    """Build every image of `scenario` into the registry at `root`.

    `userland` overrides what bottom layers carry (default: `find_userland()`).
    """
    layout = RegistryLayout(root)
    layout.ensure()
    cache = _LayerCache(Path(cache_dir)) if cache_dir is not None else None
    bottoms = scenario.bottom_layers()
    if bottoms and userland is None:
        userland = find_userland()
    layers: dict[str, BuiltLayer] = {}
    warnings: list[str] = []
    for name, layer in scenario.layers().items():
        layers[name], layer_warnings = _build_layer(
            layer, userland if name in bottoms else None, layout, cache)
        warnings += layer_warnings
    for warning in warnings:
        log.warning("%s", warning)
    images = {}
    for image in scenario.images:
        config = _config(image, layers)
        config_digest = layout.put_blob(config)
        manifest = _manifest(config_digest, config, image, layers)
        manifest_digest = layout.put_blob(manifest)
        layout.set_tag(image.repository, image.tag, manifest_digest)
        names = tuple(layer.name for layer in image.layers)
        images[image.ref] = BuiltImage(
            image.ref, manifest_digest, len(manifest), config_digest, len(config), names,
            sum(layers[n].compressed_bytes for n in names), sum(layers[n].content_bytes for n in names))
        log.info("image %s: manifest %s", image.ref, manifest_digest)
    return BuildReport(images, layers, warnings)
