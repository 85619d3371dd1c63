"""Extraction that streams (docksim's engine) against extraction after download (dockerd)."""
from __future__ import annotations

from model import Costs, simulate
from tests.test_model import image, layer, one, span, step, world

# 80 Mbit/s = 10**7 B/s; extraction at 10**8 content bytes/s, no fixed costs
STREAMING = Costs.free(extract_random_Bps=1e8, extract_compressible_Bps=1e8, extract_streams=1.0)
AFTER = Costs.free(extract_random_Bps=1e8, extract_compressible_Bps=1e8, extract_streams=0.0)
TWO = world(image("a:1", layer("base", 10), layer("top", 1)), step("pull", "a:1"))


def test_a_streamed_layer_finishes_with_its_download():
    # base 10 MB and top 1 MB share the link: top ends at 0.2 s (2 x 1 MB at 10**7 B/s),
    # base at 1.1 s (11 MB in all).  Streaming: base unpacks from 0 and cannot end
    # before its last byte (1.1 s, its own 0.1 s of work is long done); top waits for
    # base to be registered (serial) and then needs 0.01 s: 1.11 s.
    rows = simulate(TWO, costs=STREAMING)
    assert span(one(rows, "download", layer="base")) == (0.0, 1.1)
    assert span(one(rows, "extract", layer="base")) == (0.0, 1.1)
    assert span(one(rows, "extract", layer="top")) == (1.1, 1.11)
    assert span(one(rows, "pull")) == (0.0, 1.11)


def test_dockerd_extracts_after_the_download():
    # base extract starts at 1.1 and takes 0.1 s; top follows for 0.01 s: 1.21 s.
    rows = simulate(TWO, costs=AFTER)
    assert span(one(rows, "extract", layer="base")) == (1.1, 1.2)
    assert span(one(rows, "extract", layer="top")) == (1.2, 1.21)
    assert span(one(rows, "pull")) == (0.0, 1.21)


def test_slow_extraction_is_not_hidden_by_streaming():
    # 10 MB at 10**8 B/s takes 0.1 s; with extraction 20x slower (5*10**6 B/s) it
    # takes 2.0 s from the download's start, past the download's end at 1.0 s.
    slow = Costs.free(extract_random_Bps=5e6, extract_compressible_Bps=5e6, extract_streams=1.0)
    rows = simulate(world(image("a:1", layer("l", 10)), step("pull", "a:1")), costs=slow)
    assert span(one(rows, "download")) == (0.0, 1.0)
    assert span(one(rows, "extract")) == (0.0, 2.0)


def test_the_last_bytes_still_need_the_fixed_cost():
    # As the first test, with 0.05 s of fixed cost per layer: base ends at
    # max(0 + 0.05 + 0.1, 1.1 + 0.05) = 1.15; top then takes 0.05 + 0.01: 1.21.
    costs = STREAMING.with_(extract_fixed_s=0.05)
    rows = simulate(TWO, costs=costs)
    assert span(one(rows, "extract", layer="base")) == (0.0, 1.15)
    assert span(one(rows, "extract", layer="top")) == (1.15, 1.21)


def test_a_bottom_layer_also_unpacks_its_userland():
    # The userland costs 0.05 s more in base, the bottom layer of a:1, and in top,
    # the bottom of b:1 (the builder gives every image's bottom layer one).  After
    # the download (1.1 s): base 0.1 + 0.05 -> 1.25 s, top 0.01 + 0.05 -> 1.31 s.
    scenario = world(image("a:1", layer("base", 10), layer("top", 1)), image("b:1", layer("top", 1)),
                     step("pull", "a:1"))
    assert scenario.bottom_layers() == {"base", "top"}
    rows = simulate(scenario, costs=AFTER.with_(userland_extract_s=0.05))
    assert span(one(rows, "extract", layer="base")) == (1.1, 1.25)
    assert span(one(rows, "extract", layer="top")) == (1.25, 1.31)
    # streaming: base's 0.15 s of work is done long before its last byte at 1.1 s
    rows = simulate(scenario, costs=STREAMING.with_(userland_extract_s=0.05))
    assert span(one(rows, "extract", layer="base")) == (0.0, 1.1)
    assert span(one(rows, "extract", layer="top")) == (1.1, 1.16)
