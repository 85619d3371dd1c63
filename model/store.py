"""The node's image store and layer store (dockerd's image/ and layer database).

What it models: an image is a record naming its layers; layers are stored
once and shared by every image that lists them.  Docker keeps a reference
count per layer -- images hold references, and so does a pull in progress
for each layer it has found or fetched -- and deletes a layer's content only
when its last reference goes.  That is why ``docker rmi`` of one image keeps
a base layer another image still uses, and why a layer reported "Already
exists" to a pull cannot vanish under it.  Containers pin their image: removing
an image a container still uses is refused (HTTP 409 conflict).

With a capacity (``[[node]] cache_mb``) the store also plays kubelet's image
garbage collector: when the layers on disk exceed 85 % of the capacity
(``imageGCHighThresholdPercent``), the least recently used images are removed
until usage is at most 80 % (``imageGCLowThresholdPercent``); an image with a
container is never removed, and a layer a pull still holds stays until the
pull lets go of it.  Disk usage counts each registered layer's uncompressed
size once.  Kubelet checks every five minutes; the model checks whenever a
layer is registered, so the disk never overshoots for long.  An image is
"used" when a pull of it ends and when a container is created from it.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

from vocab.scenario import Image

GC_HIGH = 0.85   # kubelet's imageGCHighThresholdPercent / 100
GC_LOW = 0.80    # kubelet's imageGCLowThresholdPercent / 100


class ImageStore:
    """Images and layers present on one node, with their references."""

    def __init__(self, capacity_bytes: float | None = None,
                 layer_bytes: dict[str, int] | None = None,
                 on_delete: Callable[[str], None] | None = None) -> None:
        self._images: dict[str, Image] = {}
        self._layers: set[str] = set()            # registered (extracted) layers
        self._layer_refs: Counter[str] = Counter()
        self._containers: Counter[str] = Counter()  # containers alive per image ref
        self.capacity_bytes = capacity_bytes
        self._layer_bytes = layer_bytes or {}
        self._on_delete = on_delete                 # told when a layer's content goes
        self.used_bytes = 0
        self._last_used: dict[str, float] = {}
        self.evictions = 0

    # -- images ---------------------------------------------------------------
    def has_image(self, ref: str) -> bool:
        return ref in self._images

    def add_image(self, image: Image) -> None:
        """Write the image record (the end of a pull); its layers must be present."""
        if image.ref in self._images:
            return  # two pulls of one image: the second finds the record written
        missing = [layer.name for layer in image.layers if layer.name not in self._layers]
        if missing:
            raise RuntimeError(f"image {image.ref} registered without layers {missing}")
        self._images[image.ref] = image
        for layer in image.layers:
            self.hold_layer(layer.name)

    def used(self, ref: str, now_s: float) -> None:
        """The image was pulled or a container was created from it (for LRU)."""
        self._last_used[ref] = now_s

    def remove_image(self, ref: str) -> Image:
        """Forget the image; then each of its layers loses one reference."""
        image = self._images.pop(ref)
        self._last_used.pop(ref, None)
        for layer in image.layers:
            self.release_layer(layer.name)
        return image

    def images(self) -> tuple[str, ...]:
        return tuple(sorted(self._images))

    # -- layers ---------------------------------------------------------------
    def has_layer(self, name: str) -> bool:
        return name in self._layers

    def add_layer(self, name: str) -> None:
        """A layer was extracted and committed; someone must already hold it."""
        if self._layer_refs[name] <= 0:
            raise RuntimeError(f"layer {name} registered with no reference to it")
        if name not in self._layers:
            self._layers.add(name)
            self.used_bytes += self._layer_bytes.get(name, 0)
            self.collect()

    def hold_layer(self, name: str) -> None:
        self._layer_refs[name] += 1

    def release_layer(self, name: str) -> None:
        """Drop one reference; the last one deletes the layer's content."""
        self._layer_refs[name] -= 1
        if self._layer_refs[name] <= 0:
            del self._layer_refs[name]
            if name in self._layers:
                self._layers.discard(name)
                self.used_bytes -= self._layer_bytes.get(name, 0)
                if self._on_delete is not None:
                    self._on_delete(name)

    def layers(self) -> tuple[str, ...]:
        return tuple(sorted(self._layers))

    # -- containers pin their image -------------------------------------------
    def pin(self, ref: str) -> None:
        self._containers[ref] += 1

    def unpin(self, ref: str) -> None:
        self._containers[ref] -= 1
        if self._containers[ref] <= 0:
            del self._containers[ref]

    def in_use(self, ref: str) -> bool:
        return self._containers[ref] > 0

    # -- kubelet's image garbage collection ------------------------------------------
    def collect(self) -> int:
        """Over 85 % of capacity: remove LRU images without containers down to 80 %."""
        if self.capacity_bytes is None or self.used_bytes <= GC_HIGH * self.capacity_bytes:
            return 0
        removed = 0
        candidates = sorted((self._last_used.get(ref, 0.0), ref) for ref in self._images
                            if not self.in_use(ref))
        for _, ref in candidates:
            if self.used_bytes <= GC_LOW * self.capacity_bytes:
                break
            self.remove_image(ref)
            removed += 1
        self.evictions += removed
        return removed
