"""The processor-sharing link on its own: hand-solved arrivals, event economy, speed."""
from __future__ import annotations

import math
import random
import time

import pytest
import simpy

from model.link import Link

RATE_Bps = 1e7  # 80 Mbit/s


class CountingLink(Link):
    """Counts rate recomputations and timer firings, to check events happen only at starts/ends."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.allocations = 0
        self.firings = 0

    def _allocate(self):
        self.allocations += 1
        super()._allocate()

    def _on_timer(self, event):
        self.firings += 1
        super()._on_timer(event)


def _start_at(env, link, at_s, size_bytes, ends):
    def go():
        yield env.timeout(at_s)
        yield link.transfer(size_bytes)
        ends.append((size_bytes, at_s, env.now))
    env.process(go())


def test_a_late_arrival_slows_the_first_transfer():
    # A: 10 MB from 0 s, alone at 10**7 B/s for 0.5 s -> 5 MB left.
    # B: 10 MB from 0.5 s.  Both at 5*10**6: A's 5 MB take 1.0 s -> A ends at 1.5 s,
    # when B has 5 MB left, alone again: 0.5 s -> 2.0 s.
    env = simpy.Environment()
    link = CountingLink(env, RATE_Bps)
    ends = []
    _start_at(env, link, 0.0, 10e6, ends)
    _start_at(env, link, 0.5, 10e6, ends)
    env.run()
    assert [(at, round(end, 9)) for _, at, end in ends] == [(0.0, 1.5), (0.5, 2.0)]
    # Rates recomputed at A's start, B's start and A's end (not at B's: nothing left).
    assert link.allocations == 3
    # The timer armed for A alone (due at 1.0 s) was disarmed by B's arrival:
    # only the two real completions fired.
    assert link.firings == 2
    assert link.in_flight == 0


def test_simultaneous_completions_fire_once():
    env = simpy.Environment()
    link = CountingLink(env, RATE_Bps)
    ends = []
    for _ in range(3):
        _start_at(env, link, 0.0, 10e6, ends)
    env.run()
    assert [round(end, 9) for *_, end in ends] == [3.0, 3.0, 3.0]
    assert link.firings == 1


def test_zero_bytes_and_unlimited_links_take_no_time():
    env = simpy.Environment()
    ends = []
    _start_at(env, Link(env, RATE_Bps), 1.0, 0, ends)
    _start_at(env, Link(env, math.inf), 2.0, 10e6, ends)
    env.run()
    assert [end for *_, end in ends] == [1.0, 2.0]


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        Link(simpy.Environment(), 0)


def test_work_is_conserved_and_the_link_is_fast_with_many_flows():
    # Processor sharing is work-conserving: flows all present from 0 s finish the
    # last byte at total / capacity, whatever their sizes.  2,000 flows means
    # 2,000 completions and a few thousand SimPy events -- never one per byte.
    env = simpy.Environment()
    link = CountingLink(env, RATE_Bps)
    rng = random.Random(1)
    sizes = [rng.randint(1, 50_000_000) for _ in range(2000)]
    ends = []
    for size in sizes:
        _start_at(env, link, 0.0, size, ends)
    began = time.perf_counter()
    env.run()
    elapsed_s = time.perf_counter() - began
    assert max(end for *_, end in ends) == pytest.approx(sum(sizes) / RATE_Bps, rel=1e-9)
    # smaller flows finish first under equal sharing
    finish = {size: end for size, _, end in ends}
    assert sorted(sizes, key=finish.get) == sorted(sizes)
    assert link.firings <= len(sizes)
    assert elapsed_s < 5.0
