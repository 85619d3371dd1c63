"""Max-min fairness (model/fairshare.py) and the flow network (model/flows.py).

Hand-solved systems first, each with its arithmetic in the comments, then
properties that must hold for any network (hypothesis): no link above its
capacity, and every flow has a full link on which no flow is faster.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from model.fairshare import max_min_rates, max_min_rates_np
from model.flows import FlowNetwork


def both(paths, capacity):
    """Rates from both implementations, which must agree."""
    python = max_min_rates(paths, capacity)
    links = sorted(capacity)
    index = {link: i for i, link in enumerate(links)}
    width = max((len(p) for p in paths), default=1) or 1
    matrix = np.full((len(paths), width), -1)
    for f, path in enumerate(paths):
        matrix[f, :len(path)] = [index[link] for link in path]
    vectorised = max_min_rates_np(matrix, np.array([capacity[link] for link in links], float))
    assert vectorised.tolist() == pytest.approx(python, rel=1e-12)
    return python


# -- hand-solved systems ------------------------------------------------------------

def test_one_flow_gets_the_whole_link():
    assert both([("a",)], {"a": 10.0}) == [10.0]


def test_n_equal_flows_share_one_link_equally():
    # C / N = 12 / 4 = 3 each
    assert both([("a",)] * 4, {"a": 12.0}) == [3.0] * 4


def test_two_bottlenecks_with_different_capacities():
    # Link x (10) carries f0 and f2; link y (4) carries f1 and f2.  y fills first,
    # at 4 / 2 = 2: f1 = f2 = 2.  x has 10 - 2 = 8 left for f0 alone.
    assert both([("x",), ("y",), ("x", "y")], {"x": 10.0, "y": 4.0}) == [8.0, 2.0, 2.0]


def test_a_flow_crossing_two_shared_links():
    # Link a (12): f0, f1 and f2; link b (6): f2 and f3.  Shares: a 12/3 = 4, b 6/2 = 3,
    # so b fills at 3: f2 = f3 = 3.  a then has 12 - 3 = 9 for f0 and f1: 4.5 each.
    rates = both([("a",), ("a",), ("a", "b"), ("b",)], {"a": 12.0, "b": 6.0})
    assert rates == [4.5, 4.5, 3.0, 3.0]


def test_links_without_a_limit_do_not_constrain():
    assert max_min_rates([("a", "free"), ("free",)], {"a": 5.0}) == [5.0, math.inf]


def test_a_chain_of_three_levels():
    # c (2) holds f2 alone -> 2.  b (7) holds f1, f2: f1 = 7 - 2 = 5.
    # a (20) holds f0, f1, f2: f0 = 20 - 5 - 2 = 13.
    rates = both([("a",), ("a", "b"), ("a", "b", "c")], {"a": 20.0, "b": 7.0, "c": 2.0})
    assert rates == [13.0, 5.0, 2.0]


# -- properties of any allocation ----------------------------------------------------

@st.composite
def networks(draw):
    n_links = draw(st.integers(1, 6))
    capacity = {f"l{i}": draw(st.floats(0.5, 100.0)) for i in range(n_links)}
    links = sorted(capacity)
    paths = draw(st.lists(st.lists(st.sampled_from(links), min_size=1, max_size=4, unique=True)
                          .map(tuple), min_size=1, max_size=12))
    return paths, capacity


@settings(max_examples=300, deadline=None)
@given(networks())
def test_no_link_above_capacity_and_every_flow_has_a_bottleneck(network):
    paths, capacity = network
    rates = both(paths, capacity)
    load = {link: sum(r for r, p in zip(rates, paths) if link in p) for link in capacity}
    for link, used in load.items():
        assert used <= capacity[link] * (1 + 1e-9)                       # (1)
    for rate, path in zip(rates, paths):
        assert rate > 0
        bottlenecks = [link for link in path
                       if load[link] >= capacity[link] * (1 - 1e-9)    # the link is full ...
                       and all(rate >= r * (1 - 1e-9)                   # ... and f is the fastest on it
                               for r, p in zip(rates, paths) if link in p)]
        assert bottlenecks, (rate, path)                                  # (2)


# -- the flow network in time ---------------------------------------------------------

def _run(capacity, flows):
    """flows: (start_s, links, bytes); returns each flow's end time."""
    env = simpy.Environment()
    network = FlowNetwork(env, capacity)
    ends = [None] * len(flows)

    def one(i, start_s, links, size):
        yield env.timeout(start_s)
        yield network.transfer(links, size)
        ends[i] = env.now
    for i, flow in enumerate(flows):
        env.process(one(i, *flow))
    env.run()
    return [round(t, 9) for t in ends], network


def test_rates_change_when_a_flow_on_another_link_ends():
    # Links 0 (10 B/s) and 1 (4 B/s).  f0 on 0 (100 B), f1 on 1 (4 B), f2 on both (20 B).
    # First f1 = f2 = 2 (link 1 is full), f0 = 10 - 2 = 8.  At 2 s f1 (4 B) ends; f2 has
    # 16 B left, f0 84 B.  Now link 1 holds f2 alone (share 4), link 0 f0 and f2
    # (share 5): f2 = 4, f0 = 6.  f2 ends at 2 + 16/4 = 6 s; f0 has 84 - 6*4 = 60 B,
    # alone at 10 B/s: 6 + 6 = 12 s.
    ends, network = _run([10.0, 4.0], [(0, [0], 100), (0, [1], 4), (0, [0, 1], 20)])
    assert ends == [12.0, 2.0, 6.0]
    assert network.in_flight == 0


def test_simultaneous_events_cost_one_recomputation():
    # Three equal flows starting together: one allocation at 0 s; all end at 3 s
    # together, on one timer, and nothing is left to share.
    ends, network = _run([1e7], [(0, [0], 1e7)] * 3)
    assert ends == [3.0] * 3
    assert network.recomputations == 1 and network.timer_firings == 1


def test_the_uniform_shortcut_agrees_with_progressive_filling(monkeypatch):
    # 100 nodes (access 0..99, 10 B/s) behind one uplink (100, 50 B/s), three flows
    # each, starting at staggered times: a large component handled by (4a) ...
    flows = [(0.01 * (i % 7), [i // 3, 100], 5 + (i * 37) % 11) for i in range(300)]
    fast, network = _run([10.0] * 100 + [50.0], flows)
    assert network.global_recomputations > 0
    # ... must give exactly what full progressive filling gives.
    monkeypatch.setattr(FlowNetwork, "_uniform_rate", lambda self: None)
    slow, _ = _run([10.0] * 100 + [50.0], flows)
    assert fast == pytest.approx(slow, abs=1e-6)
    # work conservation: the uplink is the bottleneck throughout, so the last
    # byte arrives at total / 50 after the last start
    total = sum(size for *_, size in flows)
    assert max(fast) == pytest.approx(total / 50.0, rel=1e-6)
