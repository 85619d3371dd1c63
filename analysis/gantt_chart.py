"""The pull, layer by layer: a Gantt chart of one request's downloads and extractions.

Rows, top to bottom: the pull's ``resolve`` (``GET /v2/``, manifest, config),
then one row per layer, bottom layer first, holding the layer's ``download``
(with its size and rate) followed by its ``extract``.  Between the two, a
hatched grey stretch is the layer waiting for the layer below to be extracted;
before the download, an outlined stretch is the layer waiting for one of the
daemon's ``max-concurrent-downloads`` slots.

The **critical path** (``analysis.pulls.critical_path``) is drawn with thick
black edges and joined by arrows; every other bar is faded.  It is the chain
that decided when the pull ended: usually the largest layer's download and
then the last layer's extract.  What it makes visible: layers download in
parallel, but extraction is strictly bottom to top, so a big layer low in the
image holds back every layer above it; a faster link shortens only the
downloads on the path, a faster disk only the extracts.

Layers that another request's pull fetched (three clients pulling one image at
once share one transfer per layer) are included and named "(by s0-c0-r0)".
Every bar is at least ``MIN_WIDTH_FRACTION`` of the axis wide, so a 5 ms
extract shows; the printed durations are exact.
"""
from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Patch, Rectangle

from analysis.geometry import MIN_WIDTH_FRACTION
from analysis.pulls import EPS_S, LayerRows, critical_path, phase_row, pull_layer_rows, request_rows
from analysis.style import (SOURCE_NAMES, bar_style, format_duration, lecture_figure,
                            lecture_style, phase_colour)
from vocab.trace import PhaseRow

BAR_HEIGHT = 0.34
SUB = {"resolve": 0.0, "download": -0.18, "extract": 0.18}   # download above extract: may overlap
FADED_ALPHA = 0.42
CRITICAL_EDGE = {"edgecolor": "#000000", "linewidth": 3.6}
_WAIT = {"facecolor": "#E6E6E6", "edgecolor": "#8C8C8C", "hatch": "..", "linewidth": 1.0}
_QUEUE = {"facecolor": "none", "edgecolor": "#555555", "linestyle": (0, (3, 2)), "linewidth": 1.6}
GANTT_GID = "gantt"


def _rate(download: PhaseRow) -> str:
    if not download.bytes or download.duration_s <= 0:
        return ""
    mbps = download.bytes * 8 / download.duration_s / 1e6
    return f"{download.bytes / 1e6:.1f} MB, {mbps:.0f} Mbit/s"


def _bar(ax: Axes, row: PhaseRow, y: float, critical: bool,
         min_width: float) -> tuple[float, float]:
    width = max(row.duration_s, min_width)
    y += SUB[row.phase]
    style = bar_style(row.source, phase_colour(row.phase))
    if critical:
        style.update(CRITICAL_EDGE)
    patch = Rectangle((row.start_s, y - BAR_HEIGHT / 2), width, BAR_HEIGHT, zorder=3,
                      alpha=1.0 if critical else FADED_ALPHA,
                      gid=f"{GANTT_GID}:{row.phase}:{row.layer}:"
                          f"{'critical' if critical else 'other'}",
                      **style)
    ax.add_patch(patch)
    return row.start_s, row.start_s + width


def _layer_label(item: LayerRows, request: str) -> str:
    return f"layer {item.layer}" + ("" if item.owner == request else f"\n(by {item.owner})")


def plot_gantt(ax: Axes, rows: list[PhaseRow], request: str | None = None,
               replication: int = 0, title: str | None = None) -> Axes:
    """Draw one request's pull per layer on ``ax`` (see the module docstring).

    request: the request id; None takes the first ``run`` that pulled.
    Returns ``ax``.  Raises ValueError when the request did not pull.
    """
    rows = list(rows)
    request, mine = request_rows(rows, request, replication)
    pull, resolve = phase_row(mine, "pull"), phase_row(mine, "resolve")
    if pull is None:
        raise ValueError(f"request {request} did not pull (its image was cached)")
    layers = pull_layer_rows(rows, request, replication)
    path = critical_path(resolve, layers)
    on_path = {id(row) for row in path}
    span = max(pull.duration_s, 1e-6)
    min_width = MIN_WIDTH_FRACTION * span
    labels, ends = [], []
    drawn: dict[int, tuple[float, float, float]] = {}   # id(row) -> (left, right, y)
    if resolve is not None:
        left, right = _bar(ax, resolve, 0, id(resolve) in on_path, min_width)
        drawn[id(resolve)] = (left, right, 0)
        labels.append("resolve")
        ax.text(right + 0.01 * span, 0, format_duration(resolve.duration_s), va="center",
                fontsize=15, zorder=5)
    ready_s = resolve.end_s if resolve else pull.start_s   # downloads may begin
    for y, item in enumerate(layers, start=1):
        labels.append(_layer_label(item, request))
        download, extract = item.download, item.extract
        if download is not None:
            if download.start_s - ready_s > max(EPS_S, 0.02 * span):   # no free slot yet
                ax.add_patch(Rectangle((ready_s, y + SUB["download"] - 0.1),
                                       download.start_s - ready_s, 0.2,
                                       zorder=2, gid=f"{GANTT_GID}:queued", **_QUEUE))
            left, right = _bar(ax, download, y, id(download) in on_path, min_width)
            drawn[id(download)] = (left, right, y + SUB["download"])
            ax.text(left + 0.008 * span, y + SUB["download"], _rate(download), va="center",
                    ha="left",
                    fontsize=14, zorder=5, clip_on=True)
        if extract is not None:
            ready = download.end_s if download is not None else extract.start_s
            if extract.start_s - ready > max(EPS_S, 0.01 * span):
                ax.add_patch(Rectangle((ready, y + SUB["extract"] - 0.12), extract.start_s - ready,
                                       0.24, zorder=2,
                                       gid=f"{GANTT_GID}:waits", **_WAIT))
            left, right = _bar(ax, extract, y, id(extract) in on_path, min_width)
            drawn[id(extract)] = (left, right, y + SUB["extract"])
            ax.text(right + 0.01 * span, y + SUB["extract"], format_duration(extract.duration_s),
                    va="center",
                    fontsize=15, zorder=5)
            ends.append(right)
    for a, b in zip(path, path[1:]):   # join the critical path: end of one to start of the next
        (_, a_right, a_y), (b_left, _, b_y) = drawn[id(a)], drawn[id(b)]
        target = (max(b_left, a_right), b_y + (0.17 if b_y < a_y else -0.17) * (b_left < a_right))
        ax.add_patch(FancyArrowPatch((a_right, a_y), target, arrowstyle="-|>",
                                     mutation_scale=20, color="#000000", linewidth=2.2,
                                     shrinkA=0, shrinkB=0, zorder=4, gid=f"{GANTT_GID}:path"))
    ax.axvline(pull.end_s, color="#333333", linestyle=":", linewidth=2, zorder=1)
    ax.text(pull.end_s, -0.62, f"{request}: pull done in {format_duration(pull.duration_s)}",
            ha="right", va="bottom", fontsize=15, fontweight="bold")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.4, -0.75)
    ax.set_xlim(pull.start_s - 0.01 * span, max([pull.end_s, *ends]) + 0.09 * span)
    ax.grid(False, axis="y")
    ax.set_xlabel("seconds from scenario start")
    source = mine[0].source
    if title is None:
        title = f"Pull of {mine[0].image}, layer by layer ({SOURCE_NAMES.get(source, source)})"
    if title:
        ax.set_title(title, loc="left")
    steps = " \u2192 ".join(f"{r.phase} {r.layer}".strip() for r in path)
    handles = [Patch(label=phase, **bar_style(source, phase_colour(phase)))
               for phase in ("resolve", "download", "extract")]
    gids = {patch.get_gid() for patch in ax.patches}
    if f"{GANTT_GID}:waits" in gids:
        handles.append(Patch(label="waits for the layer below", **_WAIT))
    if f"{GANTT_GID}:queued" in gids:
        handles.append(Patch(label="queued for a download slot", **_QUEUE))
    path_label = f"critical path: {steps}" if len(steps) <= 64 else "critical path (thick edges)"
    handles.append(Patch(label=path_label, facecolor="white", **CRITICAL_EDGE))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=3,
              fontsize=14, columnspacing=1.2)
    return ax


def gantt_figure(rows: list[PhaseRow], request: str | None = None, replication: int = 0,
                 title: str | None = None) -> Figure:
    """A lecture-style 16:9 figure holding one ``plot_gantt``."""
    fig, ax = lecture_figure()
    with lecture_style():
        plot_gantt(ax, rows, request, replication, title)
    return fig
