"""`measure --network kernel`: two nodes, each with its own daemon (docksim's, or a
real dockerd) in its own network namespace, behind one shaped registry uplink;
nothing left behind afterwards."""
from __future__ import annotations

import subprocess

import pytest

from harness.measure import measure, why_not_measurable
from harness.netns import why_unavailable
from vocab.scenario import parse_scenario

TWO_NODES = """
[scenario]
name = "two-nodes"
replications = 1

[network]
rtt_ms = 20
registry_bandwidth_mbps = 80

[[node]]
name = "w"
count = 2
bandwidth_mbps = 1000

[[image]]
ref = "lecture/two:1"
layers = [{ name = "base", size_mb = 3.0, compression = 2.0 },
          { name = "big", size_mb = 4.0, compression = 1.0 }]

[[step]]
node = "w-*"
command = "run"
image = "lecture/two:1"
"""


@pytest.mark.parametrize("engine", ["launcher", "docker"])
def test_two_nodes_share_the_registry_uplink(engine):
    if why_not_measurable(engine) is not None or why_unavailable() is not None:
        pytest.skip("needs root, network namespaces and (for docker) dockerd")
    scenario = parse_scenario(TWO_NODES, "two.toml")
    rows = measure(scenario, network="kernel", engine=engine)
    assert {r.engine for r in rows} == {engine}
    assert {r.node for r in rows} == {"w-0", "w-1"}
    assert {(r.node, r.client) for r in rows if r.phase == "request"} == {("w-0", 0), ("w-1", 1)}
    downloads = [r for r in rows if r.phase == "download"]
    # each node has its own store: every layer crosses the uplink once per node
    assert sorted((r.node, r.layer) for r in downloads) == [
        ("w-0", "base"), ("w-0", "big"), ("w-1", "base"), ("w-1", "big")]
    # 2 x (1.5 + 4.0) MB through 80 Mbit/s cannot take less than 1.1 s in all
    wire_bytes = sum(r.bytes for r in downloads)
    assert wire_bytes == pytest.approx(2 * 5.5e6, rel=0.02)
    first = min(r.start_s for r in downloads)
    last = max(r.end_s for r in downloads)
    assert last - first >= wire_bytes * 8 / 80e6 * 0.99
    # a request needs at least the 3 resolve round trips of 20 ms
    assert all(r.duration_s >= 0.06 for r in rows if r.phase == "resolve")
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "dks" not in netns
    with open("/proc/self/mountinfo") as info:
        mounts = info.read()
    assert "docksim-measure" not in mounts and "docksim-dockerd" not in mounts
