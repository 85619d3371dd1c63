"""The sweep chart: one metric against one swept parameter, with 95 % confidence bands.

Input is a sweep's tidy table (``results.csv`` as dicts: one row per point,
replication and metric, one column per swept key; a pandas DataFrame works
too).  For every value of ``x`` (and of ``hue``) the chart draws the mean of
the metric over the replications, and a band for its 95 % confidence
interval, mean +- t(0.975, n-1) * s / sqrt(n) (Student's t; no band with a
single replication).  A deterministic model gives zero-width bands: the
replications agree.

Readability: one line per ``hue`` value, told apart by colour (Okabe-Ito),
marker and dash, so a grey print still shows them; numeric x values that span
two decades or more get a log axis; text values are evenly spaced categories.
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Iterable

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.patches import Patch

from analysis.style import OKABE_ITO, lecture_figure, lecture_style
from vocab.trace import t975

LINE_COLOURS = [OKABE_ITO[name] for name in ("blue", "orange", "bluish green", "vermillion",
                                             "reddish purple", "sky blue", "black")]
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
DASHES = ("-", "--", "-.", ":")
BAND_ALPHA = 0.22
BAND_TAG = "_band:"    # a leading "_" keeps bands out of automatic legends


def mean_ci(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high) of a 95 % confidence interval; low == high == mean for one value."""
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, mean, mean
    half = t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def metric_label(metric: str) -> str:
    """``total_s_p95`` -> ``total_s, p95 over requests (s)``."""
    for stat in ("median", "p95", "mean"):
        if metric.endswith(f"_s_{stat}"):
            return f"{metric[:-len(stat) - 1]}, {stat} over requests (s)"
    if metric.endswith("_s"):
        return f"{metric[:-2]} (s)"
    return metric


def _records(table: Any) -> list[dict]:
    if hasattr(table, "to_dict"):  # a pandas DataFrame
        return table.to_dict("records")
    return list(table)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ordered(values: Iterable[Any]) -> list[Any]:
    """Distinct values: numbers ascending, anything else in first-seen order."""
    distinct = list(dict.fromkeys(values))
    return sorted(distinct) if all(_is_number(v) for v in distinct) else distinct


def _groups(rows: list[dict], x: str, hue: str | None) -> dict[Any, dict[Any, list[float]]]:
    """hue value -> x value -> the metric's values; one point per (hue, x) or ValueError."""
    groups: dict[Any, dict[Any, list[float]]] = {}
    points: dict[tuple, set] = {}
    for row in rows:
        key = row[hue] if hue else None
        groups.setdefault(key, {}).setdefault(row[x], []).append(float(row["value"]))
        points.setdefault((key, row[x]), set()).add(row["point"])
    if any(len(found) > 1 for found in points.values()):
        fixed = {"point", "replication", "seed", "metric", "value", x, hue}
        others = [c for c in rows[0] if c not in fixed and len({r[c] for r in rows}) > 1]
        raise ValueError(f"more than one point per line position: {', '.join(others)} also "
                         "varies; keep one value of it, or use it as hue")
    return groups


def plot_sweep(ax: Axes, table: Any, x: str, y: str, hue: str | None = None) -> Axes:
    """Draw metric ``y`` against swept key ``x``, one line per value of ``hue``.

    Each line is the mean over replications with a 95 % confidence band.
    Raises ValueError for an unknown key or metric, or when a key besides x
    and hue still varies (filter the table first).  Returns ``ax``.
    """
    rows = _records(table)
    if not rows:
        raise ValueError("plot_sweep: the table has no rows")
    for name, key in (("x", x), ("hue", hue)):
        if key is not None and key not in rows[0]:
            raise ValueError(f"plot_sweep: {name} {key!r} is not a column of the table")
    metrics = _ordered(row["metric"] for row in rows)
    rows = [row for row in rows if row["metric"] == y]
    if not rows:
        raise ValueError(f"plot_sweep: no metric {y!r} (the table has: {', '.join(metrics)})")
    groups = _groups(rows, x, hue)
    xs_all = _ordered(row[x] for row in rows)
    numeric = all(_is_number(v) for v in xs_all)
    position = (lambda v: v) if numeric else {v: i for i, v in enumerate(xs_all)}.__getitem__
    replications = max(len(values) for g in groups.values() for values in g.values())
    handles: list[tuple] = []
    for i, hue_value in enumerate(_ordered(groups)):
        cells = groups[hue_value]
        xs = [v for v in xs_all if v in cells]
        stats = [mean_ci(cells[v]) for v in xs]
        colour = LINE_COLOURS[i % len(LINE_COLOURS)]
        label = f"{hue_value}" if hue else y
        [line] = ax.plot([position(v) for v in xs], [s[0] for s in stats], color=colour,
                         marker=MARKERS[i % len(MARKERS)], linestyle=DASHES[i % len(DASHES)],
                         markersize=11, label=label, zorder=3)
        # the legend shows each line over a swatch of its band
        handles.append((Patch(facecolor=colour, alpha=BAND_ALPHA, linewidth=0), line))
        ax.fill_between([position(v) for v in xs], [s[1] for s in stats], [s[2] for s in stats],
                        color=colour, alpha=BAND_ALPHA, linewidth=0, zorder=2,
                        label=f"{BAND_TAG}{label}")
    if numeric:
        low, high = min(xs_all), max(xs_all)
        if low > 0 and high / low >= 100:
            ax.set_xscale("log")
        ax.set_xticks(xs_all, [f"{v:g}" for v in xs_all])
        ax.minorticks_off()
    else:
        ax.set_xticks(range(len(xs_all)), [str(v) for v in xs_all])
        ax.set_xlim(-0.4, len(xs_all) - 0.6)
    if min(float(row["value"]) for row in rows) >= 0:
        ax.set_ylim(bottom=0)
    ax.grid(True, axis="both")
    ax.set_xlabel(x)
    ax.set_ylabel(metric_label(y))
    band = (f"band: 95 % CI over {replications} replications" if replications > 1
            else "1 replication: no band")
    labels = [line.get_label() for _, line in handles]
    legend = {"handles": handles, "labels": labels, "handler_map": {tuple: HandlerTuple(ndivide=1)},
              "handlelength": 2.4}
    if hue:
        ax.legend(title=f"{hue}\n({band})", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  alignment="left", **legend)
    else:
        ax.legend(title=band, loc="best", **legend)
    return ax


def sweep_figure(table: Any, x: str, y: str, hue: str | None = None,
                 title: str | None = None) -> Figure:
    """A lecture-style 16:9 figure holding one ``plot_sweep``."""
    fig, ax = lecture_figure()
    with lecture_style():
        plot_sweep(ax, table, x, y, hue)
        ax.set_title(title if title is not None else f"{y} against {x}", loc="left")
    return fig
