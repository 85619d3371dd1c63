"""One link on its own: processor sharing as the one-link case of the flow network.

With every flow on the same single link, max-min fairness is processor
sharing: N flows in flight each get C / N.  Hand-solved arrivals, the event
economy (rates recomputed only when flows start or end, one live timer), and
speed with many flows.
"""
from __future__ import annotations

import random
import time

import pytest
import simpy

from model.flows import FlowNetwork

RATE_Bps = 1e7  # 80 Mbit/s


def _start_at(env, network, at_s, size_bytes, ends):
    def go():
        yield env.timeout(at_s)
        yield network.transfer([0], size_bytes)
        ends.append((size_bytes, at_s, env.now))
    env.process(go())


def test_a_late_arrival_slows_the_first_transfer():
    # A: 10 MB from 0 s, alone at 10**7 B/s for 0.5 s -> 5 MB left.
    # B: 10 MB from 0.5 s.  Both at 5*10**6: A's 5 MB take 1.0 s -> A ends at 1.5 s,
    # when B has 5 MB left, alone again: 0.5 s -> 2.0 s.
    env = simpy.Environment()
    network = FlowNetwork(env, [RATE_Bps])
    ends = []
    _start_at(env, network, 0.0, 10e6, ends)
    _start_at(env, network, 0.5, 10e6, ends)
    env.run()
    assert [(at, round(end, 9)) for _, at, end in ends] == [(0.0, 1.5), (0.5, 2.0)]
    # Rates recomputed at A's start, B's start and A's end (not at B's: nothing left).
    assert network.recomputations == 3
    # The timer armed for A alone (due at 1.0 s) was disarmed by B's arrival:
    # only the two real completions fired.
    assert network.timer_firings == 2
    assert network.in_flight == 0


def test_simultaneous_completions_fire_once():
    env = simpy.Environment()
    network = FlowNetwork(env, [RATE_Bps])
    ends = []
    for _ in range(3):
        _start_at(env, network, 0.0, 10e6, ends)
    env.run()
    assert [round(end, 9) for *_, end in ends] == [3.0, 3.0, 3.0]
    assert network.timer_firings == 1


def test_zero_bytes_and_paths_without_a_limit_take_no_time():
    env = simpy.Environment()
    network = FlowNetwork(env, [RATE_Bps])
    ends = []
    _start_at(env, network, 1.0, 0, ends)

    def unlimited():
        yield env.timeout(2.0)
        yield network.transfer([], 10e6)   # no finite link on the path
        ends.append((10e6, 2.0, env.now))
    env.process(unlimited())
    env.run()
    assert [end for *_, end in ends] == [1.0, 2.0]


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        FlowNetwork(simpy.Environment(), [0])


def test_work_is_conserved_and_the_link_is_fast_with_many_flows():
    # Processor sharing is work-conserving: flows all present from 0 s finish the
    # last byte at total / capacity, whatever their sizes.  2,000 flows means
    # 2,000 completions and a few thousand SimPy events -- never one per byte.
    env = simpy.Environment()
    network = FlowNetwork(env, [RATE_Bps])
    rng = random.Random(1)
    sizes = [rng.randint(1, 50_000_000) for _ in range(2000)]
    ends = []
    for size in sizes:
        _start_at(env, network, 0.0, size, ends)
    began = time.perf_counter()
    env.run()
    elapsed_s = time.perf_counter() - began
    assert max(end for *_, end in ends) == pytest.approx(sum(sizes) / RATE_Bps, rel=1e-9)
    # smaller flows finish first under equal sharing
    finish = {size: end for size, _, end in ends}
    assert sorted(sizes, key=finish.get) == sorted(sizes)
    assert network.timer_firings <= len(sizes)
    assert elapsed_s < 5.0
