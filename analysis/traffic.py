"""Which links of the world carried a trace's layer bytes, and how fast.

Pure functions over the graph of ``analysis.topology_chart.build_topology``
and a trace; used by the topology chart and the animation.

* A download row crossed the links from its node to where its bytes came
  from: the registry, or the node's mirror (which itself fetched each layer
  once from the registry: credited to the links above it once per mirror).
  With P2P the pieces come from peers and the registry alike, so only the
  node's access link is credited.
* A link's load over a trace is its bytes divided by the time it was busy
  (the union of its downloads' intervals), against its bandwidth.
* At one moment, a download's rate is estimated as a fair share
  (``rate_at_Bps``), the way the model shares a link.
"""
from __future__ import annotations

import networkx as nx

from vocab.trace import PhaseRow

REGISTRY, CORE, SWITCH = "@registry", "@core", "@switch"   # hosts of the world's graph


def source_path(g: nx.Graph, daemon: str) -> list[tuple[str, str]]:
    """The links a daemon's layer bytes cross: to its mirror, else to the registry."""
    target = REGISTRY
    mirrors = [n for n, d in g.nodes(data=True) if d["kind"] == "mirror"]
    if mirrors:
        target = min(mirrors, key=lambda m: nx.shortest_path_length(g, daemon, m))
    hosts = nx.shortest_path(g.edge_subgraph((a, b) for a, b, d in g.edges(data=True)
                                             if d["kind"] != "peer"), daemon, target)
    path = list(zip(hosts, hosts[1:]))
    if g.graph.get("mode") == "p2p":   # pieces from peers or the registry: only the access link
        return path[:1]
    if target != REGISTRY:   # the mirror fetches upstream
        up = nx.shortest_path(g, target, REGISTRY)
        path += [("upstream", e) for e in zip(up, up[1:])]
    return path


def link_flows(g: nx.Graph, rows: list[PhaseRow], replication: int = 0) -> dict[frozenset, list]:
    """Per link: the (start_s, end_s, bytes, node) of the downloads that crossed it."""
    daemon_of = {m: n for n, d in g.nodes(data=True) for m in d.get("members", ())}
    flows: dict[frozenset, list] = {frozenset(e): [] for e in g.edges}
    upstream_seen: set = set()
    for row in rows:
        if row.replication != replication or row.phase != "download" or row.node not in daemon_of:
            continue
        for step in source_path(g, daemon_of[row.node]):
            if step[0] == "upstream":   # each layer once per mirror
                key = (step[1], row.layer)
                if key in upstream_seen:
                    continue
                upstream_seen.add(key)
                step = step[1]
            flows[frozenset(step)].append((row.start_s, row.end_s, row.bytes or 0, row.node))
    return flows


def rate_at_Bps(flow: tuple, siblings: list[tuple], t: float) -> float:
    """A download's rate at ``t``, estimated as a fair share: while n downloads of its
    node are in flight it gets 1/n of a constant rate, scaled so its bytes add up.
    Exact for the model's downloads over one link; an estimate otherwise."""
    start, end, size = flow[:3]
    if not start <= t < end:
        return 0.0
    cuts = sorted({start, end} | {x for f in siblings for x in f[:2] if start < x < end})

    def sharing(at: float) -> int:
        return max(1, sum(1 for f in siblings if f[0] <= at < f[1]))
    weight = sum((b - a) / sharing((a + b) / 2) for a, b in zip(cuts, cuts[1:]))
    return size / weight / sharing(t) if weight > 0 else 0.0



def _busy_s(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def link_loads(g: nx.Graph, rows: list[PhaseRow], replication: int = 0,
               at_s: float | None = None) -> dict[frozenset, dict]:
    """Per link: bytes, busy_s, mbps (mean rate while busy; at ``at_s``, the sum of
    the flows' rates then, see rate_at_Bps), flows (in flight at ``at_s``), load
    (mbps / bandwidth)."""
    out = {}
    by_node: dict[str, list] = {}
    for r in rows:
        if r.replication == replication and r.phase == "download":
            by_node.setdefault(r.node, []).append((r.start_s, r.end_s, r.bytes or 0, r.node))
    for edge, flows in link_flows(g, rows, replication).items():
        bandwidth = g.edges[tuple(edge)].get("bandwidth_mbps")
        if at_s is None:
            busy = _busy_s([f[:2] for f in flows])
            total = sum(f[2] for f in flows)
            mbps, active = (total * 8 / busy / 1e6 if busy > 0 else 0.0), len(flows)
        else:
            live = [f for f in flows if f[0] <= at_s < f[1]]
            busy, total, active = 0.0, 0, len(live)
            mbps = sum(rate_at_Bps(f, by_node.get(f[3], []), at_s) for f in live) * 8 / 1e6
        load = min(mbps / bandwidth, 1.0) if bandwidth else None
        out[edge] = {"bytes": total, "busy_s": busy, "mbps": mbps, "flows": active, "load": load}
    return out
