"""dockerd's unmount waits for the disk: a create right after a pull pays for
writing the pull's layers back (model/pagecache.py).  Small worlds solved by hand.

The image has 6 MB (compression 1) + 4 MB (compression 2) of content, 10**7
bytes.  On the 80 Mbit/s (10**7 B/s) link its 8 MB of blobs arrive by 0.8 s
and extraction is free, so 10**7 dirty bytes are written at 0.8 s.  A sync at
10**8 B/s takes 0.1 s.
"""
from __future__ import annotations

import pytest

from model import Costs, simulate
from model.pagecache import PageCache
from tests.test_model import image, layer, one, step, world

DOCKER_LIKE = Costs.free(create_s=0.002, remove_s=0.001, unmount_flushes=1.0,
                         disk_flush_Bps=1e8, dirty_expire_s=30.0)
IMAGE = image("a:1", layer("six", 6), layer("four", 4, 2))


def duration(row) -> float:
    return round(row.end_s - row.start_s, 9)


def test_the_first_create_after_a_pull_waits_for_the_pulls_layers():
    rows = simulate(world(IMAGE, step("pull", "a:1"), step("run", "a:1", at_s=5, repeat=2)),
                    costs=DOCKER_LIKE)
    assert one(rows, "pull").end_s == pytest.approx(0.8)
    # create: 0.002 + 10**7 / 10**8 = 0.102 s; the sync leaves nothing dirty, so
    # its remove and the next create cost only their own work
    assert duration(one(rows, "create", "s1-c0-r0")) == pytest.approx(0.102)
    assert duration(one(rows, "remove", "s1-c0-r0")) == pytest.approx(0.001)
    assert duration(one(rows, "create", "s1-c0-r1")) == pytest.approx(0.002)


@pytest.mark.parametrize("run_at_s, create_s", [(30.7, 0.102), (30.9, 0.002)],
                         ids=["still dirty", "written back by the kernel"])
def test_the_kernel_writes_dirty_data_back_after_dirty_expire(run_at_s, create_s):
    # written at 0.8 s; the flusher writes it back once 30 s old, at 30.8 s
    rows = simulate(world(IMAGE, step("pull", "a:1"), step("run", "a:1", at_s=run_at_s)),
                    costs=DOCKER_LIKE)
    assert duration(one(rows, "create", "s1-c0-r0")) == pytest.approx(create_s)


def test_an_engine_that_mounts_volatile_never_waits():
    rows = simulate(world(IMAGE, step("pull", "a:1"), step("run", "a:1", at_s=5)),
                    costs=DOCKER_LIKE.with_(unmount_flushes=0.0))
    assert duration(one(rows, "create", "s1-c0-r0")) == pytest.approx(0.002)


def test_a_cold_run_waits_for_its_own_pull():
    # the SDK's create answers 404, the pull runs, the second create syncs the layers
    rows = simulate(world(IMAGE, step("run", "a:1")), costs=DOCKER_LIKE)
    creates = [r for r in rows if r.phase == "create"]
    assert [duration(r) for r in creates] == [pytest.approx(0.102)]


def test_page_cache_counts_writes_until_synced_or_expired():
    cache = PageCache(dirty_expire_s=30.0)
    cache.write(0.0, 5)
    cache.write(10.0, 7)
    cache.write(11.0, 0)
    assert cache.dirty_bytes(29.0) == 12
    assert cache.dirty_bytes(30.0) == 7  # the first write is 30 s old: written back
    assert cache.sync(31.0) == 7
    assert cache.dirty_bytes(31.0) == 0
