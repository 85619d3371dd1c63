"""The CDF chart: how start times are distributed over requests, trace against trace.

For each trace, every request of every replication that has the metric is one
sample (``startup_s`` by default: from sending ``docker run`` until the
container's process has exec'd; ``total_s`` or ``pull_s`` also work).  The
line is the empirical CDF: the sorted values on x, the share of requests at
or below each value on y, as a step.  Simulated traces are solid lines,
measured ones dashed with a marker per sample; several traces overlay, each
in its own colour (Okabe-Ito), so one chart compares scenarios, the model
and the engine, or the engine and Docker.

What it makes visible: the two populations of ``docker run`` -- cached
images start in tens of milliseconds, pulls in seconds -- and, with many
clients or nodes, the spread a shared registry link causes (a thundering
herd).  A dotted line marks the median.  The x axis turns logarithmic when
the values span more than a factor of 20, so both populations show.
"""
from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, PercentFormatter

from analysis.style import (OKABE_ITO, SOURCE_NAMES, format_duration, lecture_figure,
                            lecture_style, line_style)
from vocab.trace import METRICS, PhaseRow, request_metrics

COLOURS = [OKABE_ITO[n] for n in ("blue", "vermillion", "bluish green", "orange",
                                  "reddish purple", "sky blue", "black")]
CDF_GID = "cdf"
LOG_SPAN = 20.0          # max/min above this: log x axis
MAX_MARKERS = 40         # more samples than this: markers on a subset


def samples(rows: list[PhaseRow], metric: str = "startup_s",
            replication: int | None = None) -> list[float]:
    """The metric of every request (of one replication, or all), sorted; None values dropped."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (one of: {', '.join(METRICS)})")
    values = [entry[metric] for (rep, _), entry in request_metrics(rows).items()
              if (replication is None or rep == replication) and entry[metric] is not None]
    return sorted(values)


def ecdf(values: list[float]) -> tuple[list[float], list[float]]:
    """x: the sorted values; y: the share of values at or below each, ending at 1.0."""
    xs = sorted(values)
    return xs, [(i + 1) / len(xs) for i in range(len(xs))]


def plot_cdf(ax: Axes, traces: list[tuple[str, list[PhaseRow]]], metric: str = "startup_s",
             replication: int | None = None, title: str | None = None) -> Axes:
    """Draw one empirical CDF per (label, rows) trace on ``ax``.

    A trace's source (first row) picks the line style: simulated solid,
    measured dashed with markers.  replication: None pools all replications.
    Returns ``ax``; each line's gid is ``cdf:<label>``.
    """
    drawn = []
    for i, (label, rows) in enumerate(traces):
        rows = list(rows)
        values = samples(rows, metric, replication)
        if not values:
            continue
        xs, ys = ecdf(values)
        source = rows[0].source
        style = line_style(source, COLOURS[i % len(COLOURS)])
        if source == "real" and len(xs) > MAX_MARKERS:
            style["markevery"] = max(1, len(xs) // MAX_MARKERS)
        name = f"{label} ({SOURCE_NAMES.get(source, source)}, n = {len(xs)})"
        ax.plot(xs, ys, drawstyle="steps-post", label=name, gid=f"{CDF_GID}:{label}",
                zorder=3, **style)
        ax.plot([xs[0], xs[0]], [0.0, ys[0]], color=style["color"], zorder=3,   # the rise from 0
                linestyle=style["linestyle"], gid=f"{CDF_GID}-rise:{label}")
        drawn += xs
    if not drawn:
        raise ValueError(f"plot_cdf: no request has {metric}")
    low, high = min(drawn), max(drawn)
    if low > 0 and high / low > LOG_SPAN:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(
            lambda x, _: f"{x:g} s" if x >= 1 else format_duration(x)))
        ax.set_xlim(low / 1.5, high * 1.5)
    else:
        pad = 0.05 * (high - low or high or 1.0)
        ax.set_xlim(max(0.0, low - pad), high + pad)
    ax.axhline(0.5, color="#777777", linestyle=":", linewidth=2, zorder=1)
    ax.text(ax.get_xlim()[1], 0.51, "median ", va="bottom", ha="right", fontsize=15,
            color="#555555")
    ax.set_ylim(0, 1.04)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.grid(True, axis="both")
    ax.set_xlabel({"startup_s": "startup: request sent \u2192 process exec'd",
                   "total_s": "request duration (as the client saw it)",
                   "pull_s": "pull duration"}[metric])
    ax.set_ylabel("share of requests at or below")
    if title is None:
        title = f"How long {metric.removesuffix('_s')} takes, over all requests"
    if title:
        ax.set_title(title, loc="left")
    ax.legend(loc="upper left")
    return ax


def cdf_figure(traces: list[tuple[str, list[PhaseRow]]], metric: str = "startup_s",
               replication: int | None = None, title: str | None = None) -> Figure:
    """A lecture-style 16:9 figure holding one ``plot_cdf``."""
    fig, ax = lecture_figure()
    with lecture_style():
        plot_cdf(ax, traces, metric, replication, title)
    return fig
