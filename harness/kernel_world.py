"""`measure --network kernel`: the scenario's world built from kernel objects.

The registry and every node live in network namespaces of their own
(harness/netns.py): each node's access link and the registry's uplink are
shaped by `tc` tbf, and the round trip by netem or docksim's delay line, so the
bytes cross a real TCP stack with real slow start and real queueing.  The
registry serves unshaped inside its namespace; each node gets its own docksim
daemon (its own store) inside its namespace (docksim's or a real dockerd), reached by the clients through
its unix socket, exactly as one Docker host per machine.
"""
from __future__ import annotations

from contextlib import closing
from functools import partial
from pathlib import Path

from harness.clients import RunContext, run_clients
from harness.measure import ENGINES, Between, each_replication, serve_registry
from harness.netns import LinkSpec, build_network
from vocab.scenario import Scenario
from vocab.trace import PhaseRow

MAX_NODES = 16  # a daemon per node: more would measure this 2-vCPU machine, not the network
REGISTRY_PORT = 5000


def links(scenario: Scenario) -> tuple[dict[str, LinkSpec], LinkSpec | None]:
    """Each node's access link (its group's, else [network] bandwidth_mbps) and the
    registry's uplink; [network] rtt_ms is the registry <-> node round trip."""
    access = {}
    for group in scenario.nodes:
        rate = group.bandwidth_mbps if group.bandwidth_mbps is not None else scenario.network.bandwidth_mbps
        for name in group.names():
            access[name] = LinkSpec(rate, group.latency_ms)
    uplink_mbps = scenario.network.registry_bandwidth_mbps
    return access, (LinkSpec(uplink_mbps) if uplink_mbps else None)


def measure_on_kernel_network(scenario: Scenario, work: Path, names: dict[str, str],
                              sizes: dict[str, int], progress, engine: str = "launcher",
                              between: Between | None = None) -> list[PhaseRow]:
    """Every replication on one kernel network built for the scenario, with one
    daemon of `engine` (launcher or docker) per node; return the rows.
    `between` as for harness.measure.measure."""
    nodes = scenario.node_names()
    access, uplink = links(scenario)
    rows: list[PhaseRow] = []
    progress(f"building a kernel network of {len(nodes)} node(s)")
    with build_network(nodes, access, uplink, rtt_ms=scenario.network.rtt_ms) as net:
        def start_registry(replication: int):
            return serve_registry(scenario, work / "registry", work,
                                  popen=partial(net.popen, net.registry_ns),
                                  listen=f"{net.registry_addr}:{REGISTRY_PORT}", shape=False,
                                  replication=replication)
        with closing(each_replication(scenario, start_registry, progress, between)) as replications:
            for replication, registry_url, stack in replications:
                sockets = {node: stack.enter_context(
                    ENGINES[engine](scenario, registry_url, work, replication, node=node,
                                    popen=partial(net.popen, net.node_ns[node])))
                    for node in nodes}
                ctx = RunContext(scenario, "", replication, engine, names, sizes,
                                 node=nodes[0], sockets=sockets)
                rows.extend(run_clients(ctx))
    return rows
