"""The node's image store and layer store (dockerd's image/ and layer database).

What it models: an image is a record naming its layers; layers are stored
once and shared by every image that lists them.  Docker keeps a reference
count per layer -- images hold references, and so does a pull in progress
for each layer it has found or fetched -- and deletes a layer's content only
when its last reference goes.  That is why ``docker rmi`` of one image keeps
a base layer another image still uses, and why a layer reported "Already
exists" to a pull cannot vanish under it.  Containers pin their image: removing
an image a container still uses is refused (HTTP 409 conflict).
"""
from __future__ import annotations

from collections import Counter

from vocab.scenario import Image


class ImageStore:
    """Images and layers present on one node, with their references."""

    def __init__(self) -> None:
        self._images: dict[str, Image] = {}
        self._layers: set[str] = set()            # registered (extracted) layers
        self._layer_refs: Counter[str] = Counter()
        self._containers: Counter[str] = Counter()  # containers alive per image ref

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

    def remove_image(self, ref: str) -> Image:
        """Forget the image; then each of its layers loses one reference."""
        image = self._images.pop(ref)
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
        self._layers.add(name)

    def hold_layer(self, name: str) -> None:
        self._layer_refs[name] += 1

    def release_layer(self, name: str) -> None:
        """Drop one reference; the last one deletes the layer's content."""
        self._layer_refs[name] -= 1
        if self._layer_refs[name] <= 0:
            del self._layer_refs[name]
            self._layers.discard(name)

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
