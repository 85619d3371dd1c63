"""How an engine's container phases are timed: by the daemon (docksim's engine)
or around the client's call (dockerd seen through the SDK).  Only the recorded
spans differ, never when anything happens.

The image is pulled at 0; the run is sent at 1.0 s.  Each API call is 4 ms,
2 ms each way.  create: in at 1.002, 2 ms of work to 1.004, answered at 1.006;
inspect 1.006-1.010; start: in at 1.012, 10 ms to 1.022, answered at 1.024;
logs 1.024-1.028; inspect -1.032; wait -1.036 (the process exited at 1.022);
remove: in at 1.038, 1 ms to 1.039, answered at 1.041.
"""
from __future__ import annotations

import pytest

from model import Costs, simulate
from tests.test_model import image, layer, one, span, step, world
from vocab.trace import request_metrics

COSTS = Costs.free(api_call_s=0.004, create_s=0.002, start_s=0.010, remove_s=0.001)
SCENARIO = world(image("a:1", layer("a", 1)), step("pull", "a:1"), step("run", "a:1", at_s=1.0),
                 bandwidth_mbps=None)


@pytest.mark.parametrize("include_call, create, start, remove, startup_s", [
    (0.0, (1.002, 1.004), (1.012, 1.022), (1.038, 1.039), 0.022),
    (1.0, (1.000, 1.006), (1.010, 1.024), (1.036, 1.041), 0.024),
], ids=["timed by the daemon", "timed around the call"])
def test_container_phases_are_timed_the_way_the_engine_times_them(
        include_call, create, start, remove, startup_s):
    rows = simulate(SCENARIO, costs=COSTS.with_(phases_include_call=include_call))
    assert span(one(rows, "create", "s1-c0-r0")) == create
    assert span(one(rows, "start", "s1-c0-r0")) == start
    assert span(one(rows, "remove", "s1-c0-r0")) == remove
    assert span(one(rows, "request", "s1-c0-r0")) == (1.0, 1.041)  # the same either way
    metrics = request_metrics(rows)[(0, "s1-c0-r0")]
    assert metrics["startup_s"] == pytest.approx(startup_s)
