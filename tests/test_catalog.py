"""The synthetic catalog against the published Docker Hub statistics (shared/FACTS.md).

Published (top-150 images, 2023): median image 157 MB compressed in 6.5 layers;
median layer 2.6 MB, p90 64 MB, p99 324 MB; 46 % of layers under 1 MB; the
largest layer holds a median 60 % of an image; shared bases save 25 % of bytes.
The generator is a model of those numbers, not a copy of the data: the bands
below are what it must stay within over several seeds.
"""
from __future__ import annotations

import statistics

import pytest

from vocab.catalog import Catalog, generate
from vocab.trace import quantile


def stats(images):
    totals = [sum(l.compressed_bytes for l in im.layers) / 1e6 for im in images]
    distinct = {l.name: l for im in images for l in im.layers}
    sizes = [l.compressed_bytes / 1e6 for l in distinct.values()]
    shares = [max(l.compressed_bytes for l in im.layers) / 1e6 / t for im, t in zip(images, totals)]
    shared = 1 - sum(sizes) / sum(totals)
    return {"image": statistics.median(totals),
            "layers": statistics.median(len(im.layers) for im in images),
            "layer": statistics.median(sizes), "p90": quantile(sizes, 0.9),
            "p99": quantile(sizes, 0.99), "small": sum(s < 1 for s in sizes) / len(sizes),
            "largest": statistics.median(shares), "saving": shared}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_hub_sized_catalog_looks_like_docker_hub(seed):
    s = stats(generate(Catalog(images=150, seed=seed)))
    assert 115 < s["image"] < 200                      # 157 MB
    assert 5 <= s["layers"] <= 8                       # 6.5
    assert 0.5 < s["layer"] < 4.0                      # 2.6 MB (ours is a little lower)
    assert 40 < s["p90"] < 110 and 200 < s["p99"] < 600  # 64 MB, 324 MB
    assert 0.38 < s["small"] < 0.56                    # 46 %
    assert 0.52 < s["largest"] < 0.70                  # 60 %
    assert 0.15 < s["saving"] < 0.35                   # 25 %


def test_the_catalog_is_seeded_and_well_formed():
    a = generate(Catalog(images=30, seed=5))
    assert a == generate(Catalog(images=30, seed=5))
    assert a != generate(Catalog(images=30, seed=6))
    assert [im.ref for im in a[:2]] == ["catalog/app-0:1", "catalog/app-1:1"]
    for im in a:
        assert im.layers[0].name.startswith("catalog-base-")     # a shared base, bottom
        assert all(1.0 <= l.compression <= 8.0 for l in im.layers)
        assert len({l.name for l in im.layers}) == len(im.layers)
    layers = {}
    for im in a:
        for l in im.layers:
            assert layers.setdefault(l.name, l) == l                # one name, one layer
    assert len({im.layers[0].name for im in a}) <= 3               # 30 images, 3 bases
