"""The comparison chart: the model's request next to the measured one, phase by phase.

For each request (one lane, in request-id order) two horizontal stacked bars:
the simulated one (upper, solid) and the measured one (lower, hatched with a
dashed edge).  Their segments are ``pull``, ``create``, ``start``, ``run``,
``remove`` and ``client`` -- the rest of the request: CLI, API round trip and
anything outside the named phases (see ``analysis.select.SEGMENTS``).

Readability choices, so a 40 ms warm start is as legible as a 2 s cold pull:

* ``normalise=True`` (the default) draws each lane relative to that request's
  measured total: the measured bar ends at 100 %, the simulated one at
  100 % + its error.  Every request then uses the full width whatever its
  length, and the x axis reads "share of the measured request time".  The
  exact totals in seconds and the error are printed in a column at the right.
  With ``normalise=False`` the x axis is plain seconds.
* with more than ``PER_BAR_LABELS_MAX`` requests the column holds one line per
  lane ("3.42 s vs 2.85 s (+19.9 %)") instead of one per bar; the legend sits
  below the axes, since the column takes the right-hand side;
* a non-empty segment is drawn at least ``MIN_WIDTH_FRACTION`` of the axis wide,
  the width taken from the bar's largest segment, so bar ends stay exact
  (see ``analysis.geometry.stacked_widths``).
"""
from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import PercentFormatter
from matplotlib.transforms import blended_transform_factory

from analysis.compare import error_pct
from analysis.geometry import MIN_WIDTH_FRACTION, stacked_widths
from analysis.select import (SEGMENTS, by_request, request_label, request_total_s,
                             resolve_replication, segment_durations_s)
from analysis.style import (CLIENT, bar_style, bar_tag, format_duration, lecture_figure,
                            lecture_style, phase_colour)
from vocab.trace import PhaseRow, parse_request_id

BAR_HEIGHT = 0.36        # two bars per lane of height 1, with a gap between lanes
BAR_OFFSET = 0.2         # simulated above the lane centre, measured below
LABEL_COLUMN = 1.02      # the totals column, right of the bars (axes fraction)
PER_BAR_LABELS_MAX = 10  # more requests than this: one label line per lane
_SOURCE_PATCH = "#FFFFFF"  # legend swatches for the two sources: pattern only
SEGMENT_NAMES = {CLIENT: "client/API"}


def _format_error(error_pct: float | None) -> str:
    if error_pct is None:
        return ""
    return f"({error_pct:+.1f} %)".replace("-", "\u2212")  # a real minus sign


def _draw_bar(ax: Axes, source: str, y: float, durations_s: dict[str, float],
              scale: float, min_width: float) -> None:
    widths = stacked_widths([durations_s[s] * scale for s in SEGMENTS], min_width)
    left = 0.0
    for segment, width in zip(SEGMENTS, widths):
        if width > 0:
            ax.add_patch(Rectangle((left, y - BAR_HEIGHT / 2), width, BAR_HEIGHT,
                                   label=bar_tag(source, segment), zorder=3,
                                   **bar_style(source, phase_colour(segment))))
        left += width


def _lane_text(sim_total: float | None, real_total: float | None,
               per_bar: bool) -> list[tuple[float, str]]:
    """(y offset from the lane centre, text) for the totals column."""
    both = sim_total is not None and real_total is not None
    error = _format_error(error_pct(sim_total, real_total) if both else None)
    sim = "\u2013" if sim_total is None else format_duration(sim_total)
    real = "\u2013" if real_total is None else format_duration(real_total)
    if per_bar:
        return [(-BAR_OFFSET, f"model {sim} {error}".rstrip()), (BAR_OFFSET, f"measured {real}")]
    return [(0.0, f"{sim} vs {real} {error}".rstrip())]


def _legend(ax: Axes, segments_present: set[str]) -> None:
    handles = [Patch(label=SEGMENT_NAMES.get(s, s), **bar_style("sim", phase_colour(s)))
               for s in SEGMENTS if s in segments_present]
    handles += [Patch(label="simulated (upper)", **bar_style("sim", _SOURCE_PATCH)),
                Patch(label="measured (lower)", **bar_style("real", _SOURCE_PATCH))]
    # Below the axes: the right-hand side holds the totals column.
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13),
              ncols=(len(handles) + 1) // 2, columnspacing=1.4)


def plot_comparison(ax: Axes, sim_rows: list[PhaseRow], real_rows: list[PhaseRow],
                    replication: int | None = 0, *, normalise: bool = True,
                    title: str | None = None) -> Axes:
    """Draw simulated vs measured per request on ``ax`` (see the module docstring).

    replication: the replication drawn from both traces; None takes each
        trace's median replication (``analysis.select.median_replication``).
    title: None gives an automatic title naming the replication(s); "" none.
    A request present in only one trace gets only its own bar.  Returns ``ax``.
    """
    sim_rows, real_rows = list(sim_rows), list(real_rows)
    if not sim_rows and not real_rows:
        raise ValueError("plot_comparison: both traces are empty")
    sim_rep = resolve_replication(sim_rows, replication) if sim_rows else None
    real_rep = resolve_replication(real_rows, replication) if real_rows else None
    sims = by_request(sim_rows, sim_rep) if sim_rows else {}
    reals = by_request(real_rows, real_rep) if real_rows else {}
    requests = sorted(set(sims) | set(reals), key=parse_request_id)

    lanes = []
    for request in requests:
        sim_total = request_total_s(sims[request]) if request in sims else None
        real_total = request_total_s(reals[request]) if request in reals else None
        reference = real_total or sim_total or 1.0
        scale = 100.0 / reference if normalise else 1.0
        lanes.append((request, sim_total, real_total, scale))
    bars_end = max(max((t or 0.0) * scale for _, s, r, scale in lanes for t in (s, r)), 1e-9)
    if normalise:
        bars_end = max(bars_end, 100.0)
    min_width = MIN_WIDTH_FRACTION * bars_end

    per_bar = len(requests) <= PER_BAR_LABELS_MAX
    column = blended_transform_factory(ax.transAxes, ax.transData)
    present: set[str] = set()
    labels = []
    for y, (request, sim_total, real_total, scale) in enumerate(lanes):
        for source, groups, dy in (("sim", sims, -BAR_OFFSET), ("real", reals, BAR_OFFSET)):
            if request in groups:
                durations = segment_durations_s(groups[request])
                present |= {s for s, d in durations.items() if d > 0}
                _draw_bar(ax, source, y + dy, durations, scale, min_width)
        for dy, text in _lane_text(sim_total, real_total, per_bar):
            ax.text(LABEL_COLUMN, y + dy, text, transform=column,
                    va="center", ha="left", fontsize=16)
        labels.append(request_label(request, sims.get(request) or reals[request]))

    ax.set_xlim(0, bars_end * 1.02)
    ax.set_ylim(len(requests) - 0.5, -0.5)
    ax.set_yticks(range(len(requests)), labels)
    ax.grid(False, axis="y")
    if normalise:
        ax.axvline(100.0, color="#333333", linestyle=":", linewidth=2, zorder=4)
        ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
        ax.set_xlabel("share of the measured request time")
    else:
        ax.set_xlabel("seconds")
    if title is None:
        same = sim_rep == real_rep or None in (sim_rep, real_rep)
        which = (f"replication {sim_rep if sim_rep is not None else real_rep}" if same
                 else f"replications {sim_rep} (model) and {real_rep} (measured)")
        title = f"Model vs measurement per phase ({which})"
    if title:
        ax.set_title(title, loc="left")
    _legend(ax, present)
    return ax


def comparison_figure(sim_rows: list[PhaseRow], real_rows: list[PhaseRow],
                      title: str | None = None, replication: int | None = 0,
                      *, normalise: bool = True,
                      docker_rows: list[PhaseRow] | None = None) -> Figure:
    """A lecture-style 16:9 figure holding one ``plot_comparison``.

    With ``docker_rows`` (a trace measured with ``engine = "docker"``) it holds
    the three-way chart instead: model vs docksim's engine vs Docker, three
    bars per request (``analysis.engines_chart.plot_engines``).
    """
    if docker_rows:
        from analysis.engines_chart import engines_figure
        return engines_figure(sim_rows, real_rows, docker_rows, replication, title=title)
    fig, ax = lecture_figure()
    with lecture_style():
        plot_comparison(ax, sim_rows, real_rows, replication, normalise=normalise, title=title)
    return fig
