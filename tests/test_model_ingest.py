"""Pulls of one image at once contend for its manifest's write lock
(model/ingest.py): small worlds whose times are solved by hand."""
from __future__ import annotations

from model import Costs, simulate
from tests.test_model import image, layer, one, span, step, world

# Free costs but the lock: 0.5 s of retries per waiting pull.  rtt 10 ms, so a
# resolve (/v2/, manifest, config) takes 0.03 s; one 8 MB layer at 80 Mbit/s
# is 0.8 s on the wire after its GET's round trip.
LOCKED = Costs.free(manifest_lock_wait_s=0.5)


def three_pulls(*blocks: str):
    return world(image("a:1", layer("a", 8)), image("b:1", layer("b", 8)), *blocks, rtt_ms=10)


def test_three_pulls_of_one_image_wait_for_each_others_retries():
    # c0 holds the manifest's reference: resolved at 0.03, its write waits for
    # c1's retries (0 -> 0.5).  c2's retries come next (0.5 -> 1.0): c1, done
    # resolving at 0.53, writes at 1.0; c2 resolves 1.0 -> 1.03 and writes at once.
    rows = simulate(three_pulls(step("pull", "a:1", clients=3)), costs=LOCKED)
    assert [span(one(rows, "resolve", f"s0-c{c}-r0")) for c in range(3)] == [
        (0.0, 0.5), (0.0, 1.0), (0.0, 1.03)]
    # c0 fetches the layer: 0.5 + 0.01 + 0.8; the others watch its transfer
    assert span(one(rows, "download", "s0-c0-r0")) == (0.5, 1.31)
    assert [span(one(rows, "pull", f"s0-c{c}-r0")) for c in range(3)] == [(0.0, 1.31)] * 3


def test_two_pulls_resume_together():
    # the holder's write waits for the other's retries (0.5); that one then resolves
    rows = simulate(three_pulls(step("pull", "a:1", clients=2)), costs=LOCKED)
    assert [span(one(rows, "resolve", f"s0-c{c}-r0")) for c in range(2)] == [(0.0, 0.5), (0.0, 0.53)]


def test_other_images_and_later_pulls_do_not_wait():
    # a:1 and b:1 at once: two references, no retries; a:1 again at 2.0, after
    # the first pull is over: the reference is free again
    rows = simulate(three_pulls(step("pull", "a:1"), step("pull", "b:1"),
                                step("pull", "a:1", at_s=2.0)), costs=LOCKED)
    assert span(one(rows, "resolve", "s0-c0-r0")) == (0.0, 0.03)
    assert span(one(rows, "resolve", "s1-c0-r0")) == (0.0, 0.03)
    assert span(one(rows, "resolve", "s2-c0-r0")) == (2.0, 2.03)


def test_without_a_lock_wait_concurrent_pulls_only_share_their_layers():
    rows = simulate(three_pulls(step("pull", "a:1", clients=3)), costs=Costs.free())
    assert [span(one(rows, "resolve", f"s0-c{c}-r0")) for c in range(3)] == [(0.0, 0.03)] * 3
    assert [span(one(rows, "pull", f"s0-c{c}-r0")) for c in range(3)] == [(0.0, 0.84)] * 3
