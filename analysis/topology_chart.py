"""The topology chart: the world of a scenario as a graph, its links coloured by load.

Built from the Scenario alone (``vocab.scenario.load_scenario``), so it also
draws a world before anything ran:

* one node (a scenario without ``[[node]]``): the client(s) talk to the
  daemon over its unix socket; the daemon reaches the registry over one link
  of ``[network] bandwidth_mbps`` with round trips of ``rtt_ms``;
* a cluster: the registry's uplink goes to one switch (``topology = "star"``)
  or to a core switch above rack switches (``"racks"``, ``rack_size`` nodes
  each); every node has its access link; ``[distribution] mode = "mirror"``
  adds a pull-through mirror on the switch (or on each rack switch), and
  ``"p2p"`` lets nodes serve each other (drawn as dotted peer links).  More
  than ``MAX_NODES`` nodes are drawn as one box per node group and switch.

Laid out left to right like the sequence diagram: clients, daemons, switches,
registry.  With a trace, each link is coloured by its load: the bytes of the
layer downloads that crossed it, divided by the time it was busy, as a share
of its bandwidth; the label gives the bytes and that rate.  With ``at_s``
the chart is a snapshot: the flows in flight at that moment.

What it makes visible: where the bytes of a pull go, which link is the
bottleneck (the registry's uplink once many nodes pull at once), and what a
mirror or P2P takes off it.  Estimates: a mirror's upstream link is credited
each layer once per mirror; with P2P only the access links are known.
"""
from __future__ import annotations

import networkx as nx
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure

from analysis.style import OKABE_ITO, SOURCE_NAMES, lecture_figure, lecture_style
from analysis.traffic import CORE, REGISTRY, SWITCH, link_loads
from vocab.trace import PhaseRow

MAX_NODES = 6       # more: one box per [[node]] group and switch
MAX_CLIENTS = 4
LOAD_CMAP = LinearSegmentedColormap.from_list(
    "docksim-load", ["#BBBBBB", OKABE_ITO["orange"], OKABE_ITO["vermillion"]])
IDLE_EDGE = "#555555"
EDGE_LABEL_GID = "topology-edge-label"
NODE_STYLE = {   # kind -> (shape, face colour, size)
    "client": ("o", "#DDDDDD", 1800), "daemon": ("s", OKABE_ITO["sky blue"], 2500),
    "group": ("s", OKABE_ITO["sky blue"], 3200), "switch": ("D", "#999999", 1300),
    "mirror": ("p", OKABE_ITO["bluish green"], 2300), "registry": ("h", OKABE_ITO["blue"], 3000),
}


def _size(n: float) -> str:
    """Bytes for a label: 14 MB, 95.3 GB, 1.2 TB."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n / 1e6:.3g} MB"


def _mbps(value) -> str:
    return "no limit" if value is None else f"{value:g} Mbit/s"


def _link(bandwidth, latency_ms: float | None = None, rtt_ms: float | None = None) -> str:
    text = _mbps(bandwidth)
    if rtt_ms:
        text += f"\nRTT {rtt_ms:g} ms"
    elif latency_ms:
        text += f" \u00b7 {latency_ms:g} ms"
    return text


def build_topology(scenario) -> nx.Graph:
    """The scenario's hosts and links; attributes read defensively (getattr).

    Nodes carry ``kind`` and ``label``; daemons also ``members`` (the trace's
    node names they stand for).  Edges carry ``bandwidth_mbps`` and ``label``.
    """
    net = getattr(scenario, "network", None)
    bandwidth = getattr(net, "bandwidth_mbps", None)
    rtt_ms = getattr(net, "rtt_ms", 0.0) or 0.0
    topology = getattr(net, "topology", "star")
    mode = getattr(getattr(scenario, "distribution", None), "mode", "registry")
    groups = list(getattr(scenario, "nodes", ()) or ())
    names = [n for grp in groups for n in _names(grp)] or ["node"]
    g = nx.Graph(mode=mode)
    g.add_node(REGISTRY, kind="registry", label="registry")
    clients = max((getattr(s, "clients", 1) for s in getattr(scenario, "steps", ())), default=1)
    if len(names) == 1 and mode == "registry" and topology == "star":
        node = names[0]
        g.add_node(node, kind="daemon", label=f"daemon\n({node})", members=(node,))
        g.add_edge(node, REGISTRY, bandwidth_mbps=bandwidth, kind="link",
                   label=_link(bandwidth, rtt_ms=rtt_ms))
        _add_clients(g, node, clients)
        return g
    top = SWITCH if topology == "star" else CORE
    g.add_node(top, kind="switch", label="switch" if top == SWITCH else "core switch")
    uplink = getattr(net, "registry_bandwidth_mbps", None)
    g.add_edge(top, REGISTRY, bandwidth_mbps=uplink, kind="uplink",
               label=_link(uplink, rtt_ms=rtt_ms))
    rack_size = max(int(getattr(net, "rack_size", 40) or 40), 1)
    by_switch: dict[str, list[tuple[str, object]]] = {}
    for index, name in enumerate(names):
        switch = SWITCH if topology == "star" else f"@rack-{index // rack_size}"
        group = next((grp for grp in groups if name in _names(grp)), None)
        by_switch.setdefault(switch, []).append((name, group))
    collapse = len(names) > MAX_NODES
    for switch, members in by_switch.items():
        if switch != top:
            g.add_node(switch, kind="switch", label=switch[1:].replace("-", " "))
            rack_up = getattr(net, "rack_uplink_mbps", None)
            g.add_edge(switch, top, bandwidth_mbps=rack_up, kind="uplink", label=_mbps(rack_up))
        if mode == "mirror":
            mirror = "@mirror" if switch == top else f"@mirror-{switch.rsplit('-', 1)[1]}"
            mirror_bw = getattr(scenario.distribution, "mirror_bandwidth_mbps", None)
            g.add_node(mirror, kind="mirror", label="mirror")
            g.add_edge(mirror, switch, bandwidth_mbps=mirror_bw, kind="mirror",
                       label=_mbps(mirror_bw))
        access = [getattr(grp, "bandwidth_mbps", None) or bandwidth for _, grp in members]
        if collapse:   # one box per [[node]] group under this switch
            for key, boxed in _by_group(members):
                _add_box(g, switch, key, boxed, getattr(boxed[0][1], "bandwidth_mbps", None)
                         or bandwidth, getattr(boxed[0][1], "latency_ms", 0.0))
            continue
        for (name, grp), bw in zip(members, access):
            g.add_node(name, kind="daemon", label=name, members=(name,))
            g.add_edge(name, switch, bandwidth_mbps=bw, kind="access",
                       label=_link(bw, getattr(grp, "latency_ms", 0.0)))
            if len(names) <= MAX_CLIENTS:
                _add_clients(g, name, 1)
    if mode == "p2p" and not collapse:
        daemons = [n for n, d in g.nodes(data=True) if d["kind"] == "daemon"]
        for a, b in zip(daemons, daemons[1:]):
            g.add_edge(a, b, bandwidth_mbps=None, kind="peer", label="")
    g.graph["mode"] = mode
    return g


def _by_group(members: list[tuple[str, object]]) -> list[tuple[str, list]]:
    """Consecutive members of one [[node]] group, with the group's name."""
    out: list[tuple[str, list]] = []
    for name, group in members:
        key = getattr(group, "name", "nodes")
        if out and out[-1][0] == key:
            out[-1][1].append((name, group))
        else:
            out.append((key, [(name, group)]))
    return out


def _add_box(g: nx.Graph, switch: str, key: str, members: list, bandwidth, latency: float) -> None:
    """Several nodes drawn as one box; its link carries their links side by side."""
    box = f"{switch}/{key}"
    first, last = members[0][0], members[-1][0]
    g.add_node(box, kind="group", label=f"{key} \u00d7 {len(members)}\n{first} \u2026 {last}",
               members=tuple(n for n, _ in members))
    g.add_edge(box, switch, bandwidth_mbps=bandwidth * len(members) if bandwidth else None,
               kind="access", label=f"{len(members)} \u00d7 {_link(bandwidth, latency)}")


def _names(group) -> list[str]:
    """The node names of a [[node]] group (one ``name`` when it cannot say)."""
    return group.names() if hasattr(group, "names") else [getattr(group, "name", "node")]


def _add_clients(g: nx.Graph, daemon: str, count: int) -> None:
    shown = count if count <= MAX_CLIENTS else 1
    for i in range(shown):
        client = f"{daemon}/client-{i}"
        label = (f"client {i}" if count > 1 else "client") if count <= MAX_CLIENTS \
            else f"{count} clients"
        g.add_node(client, kind="client", label=label)
        g.add_edge(client, daemon, bandwidth_mbps=None, kind="socket", label="unix socket")


def layout(g: nx.Graph) -> dict[str, tuple[float, float]]:
    """Left to right by distance from the registry (rightmost), leaves evenly spread."""
    tree = nx.bfs_tree(nx.Graph((a, b) for a, b, d in g.edges(data=True) if d["kind"] != "peer"),
                       REGISTRY)
    depth = nx.shortest_path_length(tree, REGISTRY)
    deepest = max(depth.values())
    pos: dict[str, tuple[float, float]] = {}
    leaves = [0.0]

    def place(host: str) -> float:
        children = list(tree.successors(host))
        y = sum(place(c) for c in children) / len(children) if children else leaves[0]
        if not children:
            leaves[0] += 1.0
        column = depth[host] - (g.nodes[host]["kind"] == "mirror")   # beside its switch
        pos[host] = (float(deepest - column), -y)
        return y
    place(REGISTRY)
    return pos


def _edge_text(data: dict, info: dict | None, compact: bool) -> str:
    """A link's label: its speed, and what it carried (whole trace) or carries (a moment)."""
    static = data["label"]
    if compact:   # one line: for small frames
        static = "" if data["kind"] == "socket" else static.split("\n")[0]
    if info and info["bytes"] and info["busy_s"]:
        return f"{static}\n{_size(info['bytes'])} \u00b7 {info['mbps']:.0f} Mbit/s"
    if info and info["flows"]:
        flows = f"{info['flows']} flow{'s' * (info['flows'] > 1)}"
        if compact:
            limit = data.get("bandwidth_mbps")
            of = f" of {limit:g}" if limit else ""
            return f"{flows}: {info['mbps']:.0f}{of} Mbit/s"
        return f"{static}\n{flows}, {info['mbps']:.0f} Mbit/s"
    return static


def draw_world(ax: Axes, g: nx.Graph, pos: dict, loads: dict | None = None, *,
               node_fill: dict[str, str] | None = None, edge_labels: bool = True,
               font_size: int = 15, node_labels: dict[str, str] | None = None,
               compact: bool = False) -> dict:
    """Draw hosts and links; links coloured and widened by ``loads`` (see link_loads).

    compact: smaller hosts and one-line labels, for the animation's small frames.
    Returns the edge label Text artists by edge.
    """
    scale = 0.45 if compact else 1.0
    for kind, (shape, face, size) in NODE_STYLE.items():
        hosts = [n for n, d in g.nodes(data=True) if d["kind"] == kind]
        if hosts:
            colours = [(node_fill or {}).get(n, face) for n in hosts]
            nx.draw_networkx_nodes(g, pos, nodelist=hosts, node_shape=shape, node_color=colours,
                                   node_size=size * scale, edgecolors="#222222", linewidths=2,
                                   ax=ax)
    for a, b, data in g.edges(data=True):
        info = (loads or {}).get(frozenset((a, b)))
        load = info["load"] if info else None
        active = info is not None and (info["bytes"] or info["flows"])
        colour = LOAD_CMAP(load) if load is not None and active else IDLE_EDGE
        width = 2.5 + 9 * (load or 0.0) if active else 2.5
        style = {"peer": ":", "socket": "--"}.get(data["kind"], "-")
        nx.draw_networkx_edges(g, pos, edgelist=[(a, b)], width=width, edge_color=[colour],
                               style=style, ax=ax, node_size=2000 * scale)
    texts = {}
    for a, b, data in g.edges(data=True) if edge_labels else ():
        text = _edge_text(data, (loads or {}).get(frozenset((a, b))), compact)
        if not text:
            continue
        (xa, ya), (xb, yb) = sorted((pos[a], pos[b]))   # a: the end farther from the registry
        # compact: access links converge on their switch; label them a little past the middle
        at = 0.55 if compact and data["kind"] == "access" else 0.5
        texts[(a, b)] = ax.text(xa + at * (xb - xa), ya + at * (yb - ya), text, ha="center",
                                va="center",
                                fontsize=font_size, zorder=5, gid=EDGE_LABEL_GID,
                                bbox={"boxstyle": "round,pad=0.25", "facecolor": "white",
                                      "edgecolor": "none", "alpha": 0.9})
    for host, (x, y) in pos.items():   # below the marker, a fixed distance on the slide
        label = (node_labels or {}).get(host, g.nodes[host]["label"])
        if compact and "members" in g.nodes[host]:   # left of a daemon, over its socket line
            ax.annotate(label, (x, y), xytext=(-20, 0), textcoords="offset points", ha="right",
                        va="center", fontsize=font_size + 1, zorder=6,
                        bbox={"boxstyle": "round,pad=0.2", "facecolor": "white",
                              "edgecolor": "none"})
            continue
        ax.annotate(label, (x, y), xytext=(0, -30 * scale ** 0.5), textcoords="offset points",
                    ha="center", va="top", fontsize=font_size + 2, zorder=6)
    return texts


def plot_topology(ax: Axes, scenario, rows: list[PhaseRow] | None = None, replication: int = 0,
                  at_s: float | None = None, title: str | None = None) -> Axes:
    """Draw the scenario's world on ``ax``, links coloured by the trace's load.

    rows: a trace of this scenario (None: the bare topology).  at_s: a moment
    of the trace: links show the flows in flight then.  Returns ``ax``.
    """
    g = build_topology(scenario)
    pos = layout(g)
    loads = link_loads(g, rows, replication, at_s) if rows else None
    draw_world(ax, g, pos, loads)
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.45)
    ax.set_axis_off()
    if loads:
        what = "load while busy" if at_s is None else f"load at {at_s:g} s"
        bar = ax.figure.colorbar(ScalarMappable(Normalize(0, 1), LOAD_CMAP), ax=ax,
                                 fraction=0.03, pad=0.01, format="{x:.0%}")
        bar.set_label(f"{what} (share of the link's bandwidth)", fontsize=16)
    if title is None:
        name = getattr(scenario, "name", "scenario")
        source = SOURCE_NAMES.get(rows[0].source, rows[0].source) if rows else ""
        title = f"{name}: who talks to whom"
        if rows:
            title += f" ({source}, replication {replication})"
    if title:
        ax.set_title(title, loc="left")
    return ax


def topology_figure(scenario, rows: list[PhaseRow] | None = None, replication: int = 0,
                    at_s: float | None = None, title: str | None = None) -> Figure:
    """A lecture-style 16:9 figure holding one ``plot_topology``."""
    fig, ax = lecture_figure()
    with lecture_style():
        plot_topology(ax, scenario, rows, replication, at_s, title)
    return fig
