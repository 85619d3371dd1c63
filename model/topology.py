"""The world's network: hosts and links as a networkx graph, and the paths between them.

What it models: a cluster's data-centre network as a tree rooted at the
registry.  Every link is full duplex -- each direction is its own link of the
same capacity -- and switches forward at line rate, so only links limit.

* ``star``: every node's access link goes to one switch; the switch's uplink
  goes to the registry.
* ``racks``: nodes are grouped ``rack_size`` at a time under rack switches
  (in declaration order); each rack switch has an uplink to a core switch,
  and the core's uplink goes to the registry.
* ``[distribution] mode = "mirror"`` adds a pull-through mirror on the switch
  (star) or one per rack switch (racks), behind a link of
  ``mirror_bandwidth_mbps``.

Edge attributes are ``bandwidth_mbps`` (None: not a limit) and ``latency_ms``
(one way).  A request's round trip between two hosts is

    RTT(a, b) = 2 * sum of latency_ms over the path / 1000           (8)

The registry's uplink carries half of ``[network] rtt_ms`` each way, so a
node whose access link has no latency sees exactly ``rtt_ms`` to the
registry, as in the one-node world.  A node's access link without its own
bandwidth takes ``[network] bandwidth_mbps``; without either it is the
unlimited loopback link of the one-node world (``Costs.unlimited_link_Bps``).
"""
from __future__ import annotations

import math
from functools import lru_cache

import networkx as nx

from model.costs import Costs
from vocab.scenario import Scenario

REGISTRY = "@registry"   # host names of the infrastructure start with @: node names cannot
SWITCH = "@switch"
CORE = "@core"


class Topology:
    """Hosts, finite links (indexed for ``FlowNetwork``) and cached paths."""

    def __init__(self, scenario: Scenario, costs: Costs):
        net, dist = scenario.network, scenario.distribution
        self.costs = costs
        self.graph = nx.Graph()
        self.nodes = scenario.node_names()
        self.mirror_of: dict[str, str] = {}   # node -> its mirror host
        self.rack_of: dict[str, int] = {}
        g = self.graph
        top = SWITCH if net.topology == "star" else CORE
        g.add_edge(top, REGISTRY, bandwidth_mbps=net.registry_bandwidth_mbps,
                   latency_ms=net.rtt_ms / 2)
        for group in scenario.nodes:
            bandwidth = group.bandwidth_mbps or net.bandwidth_mbps
            for name in group.names():
                index = len(self.rack_of)
                rack = index // net.rack_size if net.topology == "racks" else 0
                self.rack_of[name] = rack
                switch = SWITCH if net.topology == "star" else f"@rack-{rack}"
                if net.topology == "racks" and not g.has_edge(switch, CORE):
                    g.add_edge(switch, CORE, bandwidth_mbps=net.rack_uplink_mbps, latency_ms=0.0)
                g.add_edge(name, switch, bandwidth_mbps=bandwidth, latency_ms=group.latency_ms,
                           access=True)
                if dist.mode == "mirror":
                    mirror = "@mirror" if net.topology == "star" else f"@mirror-{rack}"
                    if not g.has_edge(mirror, switch):
                        g.add_edge(mirror, switch, bandwidth_mbps=dist.mirror_bandwidth_mbps,
                                   latency_ms=0.0)
                    self.mirror_of[name] = mirror
        self.parent = dict(nx.bfs_predecessors(g, REGISTRY))
        self.depth = {REGISTRY: 0}
        for host in nx.bfs_tree(g, REGISTRY):
            if host != REGISTRY:
                self.depth[host] = self.depth[self.parent[host]] + 1
        self.capacity_Bps: list[float] = []
        self.link_index: dict[tuple[str, str], int] = {}
        for a, b, data in sorted(g.edges(data=True)):
            capacity = self._capacity_Bps(data)
            if capacity < math.inf:
                for edge in ((a, b), (b, a)):
                    self.link_index[edge] = len(self.capacity_Bps)
                    self.capacity_Bps.append(capacity)
        self.path = lru_cache(maxsize=None)(self._path)
        self.links = lru_cache(maxsize=None)(self._links)
        self.rtt_s = lru_cache(maxsize=None)(self._rtt_s)

    def _capacity_Bps(self, data: dict) -> float:
        if data.get("access"):
            return self.costs.link_Bps(data["bandwidth_mbps"])  # None: loopback, as before
        if data["bandwidth_mbps"] is None:
            return math.inf
        return self.costs.link_Bps(data["bandwidth_mbps"])

    def add_link(self, capacity_Bps: float) -> int:
        """A link outside the graph (a peer's upload slot); returns its index."""
        self.capacity_Bps.append(capacity_Bps)
        return len(self.capacity_Bps) - 1

    def access_Bps(self, node: str) -> float:
        parent = self.parent[node]
        return self._capacity_Bps(self.graph.edges[node, parent])

    def _path(self, src: str, dst: str) -> tuple[tuple[str, str], ...]:
        """The directed edges from src to dst, up to their common ancestor and down."""
        up, down = [], []
        a, b = src, dst
        while a != b:
            if self.depth[a] >= self.depth[b]:
                up.append((a, self.parent[a]))
                a = self.parent[a]
            else:
                down.append((self.parent[b], b))
                b = self.parent[b]
        return tuple(up + down[::-1])

    def _links(self, src: str, dst: str) -> tuple[int, ...]:
        """The finite links of the path, as ``FlowNetwork`` indices."""
        return tuple(self.link_index[e] for e in self.path(src, dst) if e in self.link_index)

    def _rtt_s(self, src: str, dst: str) -> float:
        """Equation (8)."""
        return 2 * sum(self.graph.edges[e]["latency_ms"] for e in self.path(src, dst)) / 1000

    def bottleneck_Bps(self, links: tuple[int, ...]) -> float:
        return min((self.capacity_Bps[i] for i in links), default=math.inf)
