"""An animated pull: layer bytes moving across the topology, as a GIF.

Each frame is the topology chart (``analysis.topology_chart``) at one moment
of one replication: a link's width and colour follow the rate it carries then
(the sum, over the downloads in flight on it, of each download's mean rate:
its bytes over its duration), and its label counts the flows.  A daemon's
fill goes from white to green as its image's layers are extracted ("2/3
layers"); the clock and a progress bar run along the bottom.

What it makes visible: the registry link saturating while layers stream in
parallel, concurrent pulls sharing it, layers arriving (extracted) one by one,
bottom first, and, in a cluster, the uplink that every node shares.

Frames are spread evenly from the first request to the last pull's end (at
most ``MAX_FRAMES``); the figure is small (960 x 540 px) so the GIF stays
well under 2 MB.  Saved with matplotlib's ``PillowWriter``; the same trace
gives the same bytes (frames are rendered by Agg, quantised by Pillow, no
timestamps).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
from matplotlib.animation import PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from analysis.style import OKABE_ITO, lecture_style
from analysis.topology_chart import build_topology, draw_world, layout
from analysis.traffic import link_loads
from vocab.trace import PhaseRow

MAX_FRAMES = 60
FIGSIZE_IN, GIF_DPI = (9.6, 5.4), 100
PRESENT = OKABE_ITO["bluish green"]


def frame_times(rows: list[PhaseRow], replication: int = 0, frames: int = 48) -> list[float]:
    """Evenly spaced moments from the first request's start to the last pull's end."""
    frames = max(2, min(int(frames), MAX_FRAMES))
    mine = [r for r in rows if r.replication == replication]
    if not mine:
        raise ValueError(f"the trace has no rows in replication {replication}")
    pulls = [r for r in mine if r.phase in ("pull", "download", "extract")]
    start = min(r.start_s for r in mine)
    end = max(r.end_s for r in (pulls or mine))
    end = end if end > start else start + 1.0
    return [start + (end - start) * i / (frames - 1) for i in range(frames)]


def layers_present(g, rows: list[PhaseRow], replication: int,
                   t: float) -> dict[str, tuple[int, int]]:
    """Per drawn daemon: (layers extracted by ``t``, layers it extracts in the replication)."""
    out = {}
    for host, data in g.nodes(data=True):
        members = set(data.get("members", ()))
        if not members:
            continue
        done = {(r.node, r.layer) for r in rows if r.replication == replication
                and r.phase == "extract" and r.node in members}
        ready = {(r.node, r.layer) for r in rows if r.replication == replication
                 and r.phase == "extract" and r.node in members and r.end_s <= t}
        out[host] = (len(ready), len(done))
    return out


def _fill(fraction: float) -> str:
    white, green = to_rgb("#FFFFFF"), to_rgb(PRESENT)
    return to_hex(tuple(w + (g - w) * fraction for w, g in zip(white, green)))


def draw_frame(fig: Figure, g, pos: dict, rows: list[PhaseRow], replication: int, t: float,
               t0: float, t1: float, title: str) -> None:
    """One frame: the world at ``t``."""
    fig.clear()
    ax = fig.add_axes((0.02, 0.1, 0.96, 0.78))
    loads = link_loads(g, rows, replication, at_s=t)
    present = layers_present(g, rows, replication, t)
    fills, labels = {}, {}
    for host, (ready, total) in present.items():
        if total:
            fills[host] = _fill(ready / total)
            name = g.nodes[host]["label"].replace("\n", " ")
            labels[host] = f"{name}: {ready}/{total} layers"
    draw_world(ax, g, pos, loads, node_fill=fills, font_size=11, node_labels=labels,
               compact=True)
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.4)
    ax.set_axis_off()
    fig.text(0.02, 0.95, title, fontsize=20, fontweight="bold", va="center")
    fig.text(0.98, 0.04, f"t = {t:.2f} s", fontsize=18, ha="right", va="center",
             family="monospace")
    share = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
    fig.add_artist(Rectangle((0.02, 0.03), 0.8, 0.02, transform=fig.transFigure,
                             facecolor="#EEEEEE", edgecolor="#999999"))
    fig.add_artist(Rectangle((0.02, 0.03), 0.8 * share, 0.02, transform=fig.transFigure,
                             facecolor=OKABE_ITO["blue"], edgecolor="none"))


def animate_pull(scenario, rows: list[PhaseRow], out: str | Path, replication: int = 0,
                 frames: int = 48, fps: int = 8, title: str | None = None) -> Path:
    """Write the GIF of one replication's pulls across the scenario's topology.

    frames: how many (2 .. ``MAX_FRAMES``); fps: frames per second of the GIF.
    Returns the path written (``out`` with suffix ``.gif``).
    """
    rows = list(rows)
    out = Path(out).with_suffix(".gif")
    out.parent.mkdir(parents=True, exist_ok=True)
    g = build_topology(scenario)
    pos = layout(g)
    times = frame_times(rows, replication, frames)
    if title is None:
        title = f"{getattr(scenario, 'name', 'scenario')}: the pull, link by link"
    # frames are placed by hand: no constrained layout (it would rerun on every frame)
    with lecture_style(), mpl.rc_context({"figure.constrained_layout.use": False}):
        fig = Figure(figsize=FIGSIZE_IN, dpi=GIF_DPI, layout="none")
        FigureCanvasAgg(fig)
        writer = PillowWriter(fps=fps)
        with writer.saving(fig, str(out), dpi=GIF_DPI):
            for t in times:
                draw_frame(fig, g, pos, rows, replication, t, times[0], times[-1], title)
                writer.grab_frame(facecolor="white")
    return out
