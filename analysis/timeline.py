"""The timeline (Gantt) chart: every phase of every request of one replication.

Layout, top to bottom, one block per request (in request-id order):

* the block's y label is the request and its command, e.g. ``s0-c0-r1 run``;
* ``request`` is a light grey background box behind the whole block: the time
  the client waited, with the exact duration printed at its right end;
* the main row holds the daemon's phases one after the other: ``pull`` (as a
  band over the pull's whole span), then ``create``, ``start``, ``run``,
  ``remove``;
* below it, thinner sub-rows show what the pull did: one ``resolve`` row and
  one row per layer (labelled ``layer NAME``, bottom layer first) with that
  layer's ``download`` followed by its ``extract``.

Readability choice for millisecond phases: every bar is drawn at least
``MIN_WIDTH_FRACTION`` of the axis wide (about 8 px on a 1600 px slide) and
pushes the bars after it in its row to the right (see ``analysis.geometry``);
the request box grows to cover them.  Positions are therefore exact up to a few
pixels, and the printed request durations are exact.

When the detailed layout would need more than ``MAX_DETAIL_ROWS`` rows (about
20 rows fit a slide at 17 pt), it switches to a compact one: one lane per
request, the pull's sub-rows squeezed into the lower part of the lane without
their own labels.  Up to ~20 requests fit this way.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from analysis.geometry import MIN_WIDTH_FRACTION, sequential_bars
from analysis.select import by_request, request_label, request_span_s, resolve_replication
from analysis.style import (SOURCE_NAMES, bar_style, bar_tag, format_duration,
                            lecture_figure, lecture_style, phase_colour)
from vocab.trace import PHASES, PhaseRow

MAX_DETAIL_ROWS = 20
BLOCK_GAP = 0.3   # extra space after a request with sub-rows, so boxes stay apart
PULL_PARTS = ("resolve", "download", "extract")
_BACKGROUND = {"facecolor": "#EDEDED", "edgecolor": "#8C8C8C", "linewidth": 1.0}


@dataclass
class _Row:
    """One horizontal row of bars: its centre, bar height and contents."""

    label: str
    y: float
    height: float
    bars: list[PhaseRow] = field(default_factory=list)
    main: bool = False


@dataclass
class _Block:
    """One request: its rows and the extent of its background box."""

    request: str
    rows: list[PhaseRow]
    lanes: list[_Row]
    top: float
    bottom: float


def _layer_order(rows: list[PhaseRow]) -> list[str]:
    """Layers bottom first: extraction is strictly bottom to top."""
    first: dict[str, tuple] = {}
    for row in rows:
        if row.phase in ("download", "extract"):
            key = (row.phase != "extract", row.start_s)
            first[row.layer] = min(first.get(row.layer, key), key)
    return sorted(first, key=first.__getitem__)


def _sub_rows(rows: list[PhaseRow]) -> list[tuple[str, list[PhaseRow]]]:
    subs = []
    resolves = [row for row in rows if row.phase == "resolve"]
    if resolves:
        subs.append(("resolve", resolves))
    for layer in _layer_order(rows):
        parts = [row for row in rows if row.phase in ("download", "extract") and row.layer == layer]
        subs.append((f"layer {layer}" if layer else "layers", parts))
    return subs


def _blocks(groups: dict[str, list[PhaseRow]], detail: bool) -> list[_Block]:
    blocks, y = [], 0.0
    for request, rows in groups.items():
        main = _Row(request_label(request, rows), y, 0.7 if detail else 0.46, main=True,
                    bars=[r for r in rows if r.phase not in PULL_PARTS and r.phase != "request"])
        subs = _sub_rows(rows)
        lanes = [main]
        if detail:
            for i, (label, parts) in enumerate(subs, start=1):
                lanes.append(_Row(label, y + i, 0.5, parts))
            top, bottom = y - 0.46, y + len(subs) + 0.46
            y += len(subs) + 1 + (BLOCK_GAP if subs else 0.0)
        else:
            main.y = y - 0.18  # bars in the upper part, the pull's parts below
            strip = 0.32 / max(len(subs), 1)
            for i, (label, parts) in enumerate(subs):
                lanes.append(_Row(label, y + 0.1 + strip * (i + 0.5), strip * 0.85, parts))
            top, bottom, y = y - 0.46, y + 0.46, y + 1
        blocks.append(_Block(request, rows, lanes, top, bottom))
    return blocks


def _draw_block(ax: Axes, block: _Block, min_width_s: float, x_pad_s: float) -> float:
    """Draw one request; return the right end of what was drawn."""
    right = 0.0
    for lane in block.lanes:
        intervals = [(row.start_s, row.end_s) for row in lane.bars]
        for row, (left, width) in zip(lane.bars, sequential_bars(intervals, min_width_s)):
            ax.add_patch(Rectangle((left, lane.y - lane.height / 2), width, lane.height,
                                   label=bar_tag(row.source, row.phase), zorder=3,
                                   **bar_style(row.source, phase_colour(row.phase))))
            right = max(right, left + width)
    start_s, end_s = request_span_s(block.rows)
    right = max(right, end_s)
    request_rows = [row for row in block.rows if row.phase == "request"]
    if request_rows:
        ax.add_patch(Rectangle((start_s - x_pad_s, block.top), right - start_s + 2 * x_pad_s,
                               block.bottom - block.top, zorder=1,
                               label=bar_tag(request_rows[0].source, "request"), **_BACKGROUND))
    main = block.lanes[0]
    ax.text(right + 4 * x_pad_s, main.y, format_duration(end_s - start_s),
            va="center", ha="left", fontsize=16, zorder=4)
    return right


def _legend(ax: Axes, rows: list[PhaseRow]) -> None:
    present = {row.phase for row in rows}
    source = rows[0].source
    handles = []
    for phase in PHASES:
        if phase not in present:
            continue
        if phase == "request":
            handles.append(Patch(label="request (client)", **_BACKGROUND))
        else:
            handles.append(Patch(label=phase, **bar_style(source, phase_colour(phase))))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              title=SOURCE_NAMES.get(source, source), alignment="left")


MAX_REQUESTS = 20  # lanes drawn at most; the rest are counted in the title


def _axis_start_s(rows: list[PhaseRow]) -> float:
    """0 (the scenario's start) unless the rows begin late: then zoom on them."""
    first_s, last_s = min(row.start_s for row in rows), max(row.end_s for row in rows)
    if first_s <= 0.1 * last_s:
        return min(0.0, first_s)
    return first_s - 0.02 * (last_s - first_s)


def plot_timeline(ax: Axes, rows: list[PhaseRow], replication: int | None = 0,
                  title: str | None = None, *, detail: bool | None = None) -> Axes:
    """Draw one replication of a trace as a Gantt chart on ``ax``.

    replication: which one to draw; None picks the median replication.
    title: None gives "Simulated timeline (replication 0)" or the like;
        "" gives none.
    detail: True/False forces the detailed/compact layout; None chooses by
        size (see the module docstring).
    The x axis starts at 0, the scenario's start, unless the rows all begin
    late: to zoom on a short request, pass only its rows.
    Bars of a measured trace are hatched, of a simulated one solid.
    Returns ``ax``.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("plot_timeline: the trace has no rows")
    replication = resolve_replication(rows, replication)
    groups = by_request(rows, replication)
    shown_note = ""
    if len(groups) > MAX_REQUESTS:
        # a slide cannot show a thousand lanes, and drawing them takes minutes
        first = sorted(groups, key=lambda r: min(row.start_s for row in groups[r]))[:MAX_REQUESTS]
        shown_note = f", first {MAX_REQUESTS} of {len(groups)}"
        groups = {request: groups[request] for request in groups if request in first}
    if detail is None:
        detail = sum(1 + len(_sub_rows(g)) for g in groups.values()) <= MAX_DETAIL_ROWS
    blocks = _blocks(groups, detail)
    chosen = [row for group in groups.values() for row in group]
    start_s = _axis_start_s(chosen)
    span_s = max(row.end_s for row in chosen) - start_s or 1.0
    min_width_s, x_pad_s = MIN_WIDTH_FRACTION * span_s, 0.002 * span_s
    right = max(_draw_block(ax, block, min_width_s, x_pad_s) for block in blocks)

    ax.set_xlim(start_s, right + 0.13 * span_s)  # room for the duration labels
    ax.set_ylim(blocks[-1].bottom + 0.1, blocks[0].top - 0.1)  # first request on top
    lanes = [lane for block in blocks for lane in block.lanes if detail or lane.main]
    ax.set_yticks([lane.y for lane in lanes], [lane.label for lane in lanes])
    for lane, tick in zip(lanes, ax.get_yticklabels()):
        if not lane.main:
            tick.set_color("#555555")
            tick.set_fontsize(16)
            tick.set_fontstyle("italic")
    ax.grid(False, axis="y")
    ax.set_xlabel("seconds from scenario start")
    source = chosen[0].source
    if title is None:
        name = SOURCE_NAMES.get(source, source).capitalize()
        title = f"{name} timeline (replication {replication})"
    if title:
        title += shown_note
        ax.set_title(title, loc="left")
    _legend(ax, chosen)
    return ax


def timeline_figure(rows: list[PhaseRow], title: str | None = None,
                    replication: int | None = 0) -> Figure:
    """A lecture-style 16:9 figure holding one ``plot_timeline``."""
    fig, ax = lecture_figure()
    with lecture_style():
        plot_timeline(ax, rows, replication, title)
    return fig
