"""Processor sharing (model/sharing.py) and container operations that share the
machine (model/daemon.py): small worlds whose times are solved by hand."""
from __future__ import annotations

import math

import pytest
import simpy

from model import Costs, simulate
from model.sharing import ProcessorSharing
from tests.test_model import image, layer, one, span, step, world


def finish_times(capacity: float, jobs: list[tuple[float, float]]) -> list[float]:
    """When each (arrival_s, work_s) job finishes on one ProcessorSharing."""
    env = simpy.Environment()
    cpu = ProcessorSharing(env, capacity)
    ends = [math.nan] * len(jobs)

    def job(i: int, at_s: float, work_s: float):
        yield env.timeout(at_s)
        yield from cpu.work(work_s)
        ends[i] = env.now
    for i, (at_s, work_s) in enumerate(jobs):
        env.process(job(i, at_s, work_s))
    env.run()
    return ends


def test_up_to_capacity_operations_run_at_full_speed():
    assert finish_times(2, [(0, 1.0), (0, 0.5)]) == [1.0, 0.5]


def test_more_operations_than_capacity_share_it_equally():
    # three jobs of 1 s on capacity 2: each at rate 2/3, all done at 1.5 s
    assert finish_times(2, [(0, 1.0)] * 3) == pytest.approx([1.5] * 3)


def test_an_arrival_slows_the_running_operation_and_a_departure_speeds_it_up():
    # capacity 1.  A (1 s) alone until 0.5 s: 0.5 s left.  Then A and B (1 s) at
    # rate 1/2: A's 0.5 s take until 1.5 s, when B has 0.5 s left, done alone at 2.0 s.
    assert finish_times(1, [(0, 1.0), (0.5, 1.0)]) == pytest.approx([1.5, 2.0])


def test_unequal_operations_leave_in_order_of_work():
    # capacity 1, 0.2 s and 0.6 s at once: both at 1/2 until the short one is done
    # at 0.4 s (the long one has 0.4 s left), which then runs alone until 0.8 s
    assert finish_times(1, [(0, 0.2), (0, 0.6)]) == pytest.approx([0.4, 0.8])


def test_infinite_capacity_never_shares_and_zero_work_takes_no_time():
    assert finish_times(math.inf, [(0, 1.0)] * 5) == [1.0] * 5
    assert finish_times(1, [(0.25, 0.0), (0, 1.0)]) == [0.25, 1.0]


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity > 0"):
        ProcessorSharing(simpy.Environment(), 0)
    with pytest.raises(ValueError, match="container_parallelism"):
        Costs.free(container_parallelism=-1.0)


def test_simultaneous_runs_share_the_daemons_container_work():
    # Four cached runs sent at 1.0 s; calls are free, so every create begins at
    # 1.0.  Alone a create is 10 ms and a start 40 ms; the machine runs two at
    # full speed.  Four creates at rate 1/2: all done at 1.020.  Four starts
    # then at rate 1/2: all exec'd at 1.020 + 0.080 = 1.100.
    scenario = world(image("a:1", layer("a", 1)), step("pull", "a:1"),
                     step("run", "a:1", at_s=1.0, clients=4), bandwidth_mbps=None)
    costs = Costs.free(create_s=0.010, start_s=0.040, container_parallelism=2)
    rows = simulate(scenario, costs=costs)
    for client in range(4):
        assert span(one(rows, "create", f"s1-c{client}-r0")) == (1.0, 1.02)
        assert span(one(rows, "start", f"s1-c{client}-r0")) == (1.02, 1.1)
    # with room for all four, each run is as fast as one alone
    rows = simulate(scenario, costs=costs.with_(container_parallelism=4))
    assert span(one(rows, "start", "s1-c3-r0")) == (1.01, 1.05)
