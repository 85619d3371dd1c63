"""A synthetic image catalog shaped like Docker Hub's, for workloads over many images.

``[catalog]`` in a scenario generates ``images`` images, seeded, whose shape
follows published statistics of Docker Hub's most pulled images (a 2023
snapshot of the top 150; see shared/FACTS.md):

* an image is about 157 MB compressed (median) in about 6.5 non-empty layers,
  with a heavy right tail (a few images are gigabytes);
* one layer dominates: the largest layer holds a median 60 % of the image;
* most of the other layers are small (46 % of all layers are under 1 MB, the
  median layer is 2.6 MB, p90 64 MB, p99 324 MB);
* images share base layers (an OS, a language runtime), which saves about a
  quarter of the bytes across images.

The generator, per image, in this order (every draw from one seeded stream, so
a seed always gives the same catalog):

1. a base from a pool of ``bases`` shared bottom layers, picked with
   popularity 1/rank (a few bases, like debian and alpine, are most used);
2. a total compressed size T ~ lognormal(median ``median_image_mb``, sigma 0.9),
   at least 1.1 x the base;
3. a layer count k ~ round(lognormal(median ``median_layers``, sigma 0.45)), 2..30;
4. the dominant layer: a fraction f ~ Beta(2.6, 1.8) of T (median 0.61), at
   most 95 % of what the base leaves;
5. the k - 2 other layers split the rest with Dirichlet(0.25) weights: a
   small concentration gives a few medium layers and many tiny ones;
6. each layer's compression (uncompressed / gzip) ~ lognormal(median 2.6,
   sigma 0.4), clipped to 1..8; ``size_mb`` is the uncompressed size.

The test (tests/test_catalog.py) checks the generated statistics against the
published ones.  Image i is the i-th most popular: a Zipf workload over the
catalog picks ranks in this order.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from vocab.scenario import Image, Layer

_TOTAL_SIGMA = 0.8
_LAYERS_SIGMA = 0.45
_BASE_MEDIAN_MB = 55.0
_BASE_SIGMA = 0.5
_DOMINANT_BETA = (2.4, 1.9)
_REST_CONCENTRATION = 0.45
_COMPRESSION_MEDIAN = 2.6
_COMPRESSION_SIGMA = 0.4
_SMALLEST_MB = 0.005   # a layer holding a few config files


@dataclass(frozen=True)
class Catalog:
    images: int
    seed: int
    prefix: str = "catalog"
    bases: int | None = None           # None: one base per 10 images
    median_image_mb: float = 157.0     # compressed
    median_layers: float = 6.5
    tag: str = "1"

    @property
    def base_count(self) -> int:
        return self.bases if self.bases is not None else max(1, round(self.images / 10))


def _layer(name: str, compressed_mb: float, rng: random.Random) -> Layer:
    compression = min(8.0, max(1.0, rng.lognormvariate(math.log(_COMPRESSION_MEDIAN),
                                                       _COMPRESSION_SIGMA)))
    compression = round(compression, 3)
    return Layer(name, round(max(_SMALLEST_MB, compressed_mb) * compression, 6), compression)


def generate(catalog: Catalog) -> tuple[Image, ...]:
    """The catalog's images, most popular first; deterministic in ``catalog.seed``."""
    rng = random.Random(f"docksim-catalog/{catalog.seed}")
    bases = [_layer(f"{catalog.prefix}-base-{b}",
                    rng.lognormvariate(math.log(_BASE_MEDIAN_MB), _BASE_SIGMA), rng)
             for b in range(catalog.base_count)]
    base_weights = [1 / (rank + 1) for rank in range(len(bases))]
    images = []
    for i in range(catalog.images):
        base = rng.choices(bases, weights=base_weights)[0]
        base_mb = base.compressed_bytes / 1e6
        total_mb = max(1.1 * base_mb,
                       rng.lognormvariate(math.log(catalog.median_image_mb), _TOTAL_SIGMA))
        count = min(30, max(2, round(rng.lognormvariate(math.log(catalog.median_layers),
                                                        _LAYERS_SIGMA))))
        own_mb = total_mb - base_mb
        dominant_mb = min(rng.betavariate(*_DOMINANT_BETA) * total_mb, 0.95 * own_mb)
        if count == 2:
            dominant_mb = own_mb
        rest_mb = own_mb - dominant_mb
        weights = [rng.gammavariate(_REST_CONCENTRATION, 1.0) for _ in range(count - 2)]
        scale = rest_mb / sum(weights) if weights and sum(weights) > 0 else 0.0
        sizes = [dominant_mb] + [w * scale for w in weights]
        # the dominant layer sits anywhere above the base (an app, a runtime, a model)
        position = rng.randrange(len(sizes))
        sizes.insert(position, sizes.pop(0))
        name = f"{catalog.prefix}-app-{i}"
        layers = (base,) + tuple(_layer(f"{name}-{j}", mb, rng) for j, mb in enumerate(sizes))
        images.append(Image(f"{catalog.prefix}/app-{i}:{catalog.tag}", layers))
    return tuple(images)


def _check_prefix(value: str) -> str | None:
    from vocab.scenario import NAME_RE
    return None if NAME_RE.match(value) else f"{value!r} must be lowercase letters, digits and dashes"


def load_catalog(raw: dict, table, default_seed: int) -> Catalog:
    """The [catalog] table, checked (``table`` is the scenario loader's checker)."""
    from vocab.limits import MAX_CATALOG_IMAGES, MAX_LAYER_MB, between, positive_at_most
    from vocab.schema import Field, non_negative
    schema = {"images": Field(int, check=between(1, MAX_CATALOG_IMAGES)),
              "seed": Field(int, default_seed, non_negative),
              "prefix": Field(str, "catalog", _check_prefix),
              "bases": Field(int, None, between(1, MAX_CATALOG_IMAGES)),
              "median_image_mb": Field(float, 157.0, positive_at_most(MAX_LAYER_MB)),
              "median_layers": Field(float, 6.5,
                                     lambda v: None if v >= 2 else f"must be at least 2, not {v}")}
    return Catalog(**table(raw, schema, "catalog"))
