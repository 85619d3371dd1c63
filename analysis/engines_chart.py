"""Model vs docksim's engine vs Docker: three bars per request, phase by phase.

The three-way form of the comparison chart (``analysis.comparison_chart``):
for each request (one lane, in request-id order) three horizontal stacked bars
with the comparison's segments (``pull``, ``create``, ``start``, ``run``,
``remove``, ``client/API``):

* the model (top): solid;
* docksim's engine, ``launcher`` (middle): hatched ``//`` with a dashed edge;
* Docker itself, ``engine = "docker"`` (bottom): cross-hatched with a dotted edge.

Each lane is drawn relative to Docker's total for that request (100 %, the
dotted line), so the bars read "how close to the real thing"; the column at
the right gives every total in seconds and its error against Docker.  What it
makes visible: whether the model predicts Docker as well as it predicts the
engine it was calibrated on, and which phase differs (Docker's ``start``
goes through containerd and runc; its pull verifies and unpacks through
containerd's content store).
"""
from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import PercentFormatter
from matplotlib.transforms import blended_transform_factory

from analysis.compare import error_pct
from analysis.comparison_chart import SEGMENT_NAMES
from analysis.geometry import MIN_WIDTH_FRACTION, stacked_widths
from analysis.select import (SEGMENTS, by_request, request_label, request_total_s,
                            resolve_replication, segment_durations_s)
from analysis.style import (bar_style, bar_tag, format_duration, lecture_figure, lecture_style,
                            phase_colour)
from vocab.trace import PhaseRow, parse_request_id

ENGINES = (("sim", "model"), ("real", "docksim"), ("docker", "Docker"))
BAR_HEIGHT, BAR_STEP = 0.26, 0.29


def engine_style(which: str, colour: str) -> dict:
    """Bar keywords: model solid, docksim hatched/dashed, Docker cross-hatched/dotted."""
    if which == "docker":
        return {**bar_style("real", colour), "hatch": "xx", "linestyle": (0, (1, 1.2))}
    return bar_style(which, colour)


def _format_error(value: float | None) -> str:
    return "" if value is None else f" ({value:+.1f} %)".replace("-", "\u2212")


def plot_engines(ax: Axes, sim_rows: list[PhaseRow], real_rows: list[PhaseRow],
                 docker_rows: list[PhaseRow], replication: int | None = 0, *,
                 title: str | None = None) -> Axes:
    """Draw model, docksim's engine and Docker per request on ``ax``.

    Any of the three traces may be empty (its bars are left out); lanes are
    relative to Docker's total, else docksim's, else the model's.
    replication: drawn from every trace; None takes each one's median.
    Returns ``ax``; bars are tagged ``sim``, ``real`` and ``docker``.
    """
    traces = {"sim": list(sim_rows), "real": list(real_rows), "docker": list(docker_rows)}
    groups = {k: by_request(rows, resolve_replication(rows, replication)) if rows else {}
              for k, rows in traces.items()}
    present_engines = [k for k, _ in ENGINES if groups[k]]
    if not present_engines:
        raise ValueError("plot_engines: all three traces are empty")
    requests = sorted({r for g in groups.values() for r in g}, key=parse_request_id)
    min_width = MIN_WIDTH_FRACTION * 100.0
    column = blended_transform_factory(ax.transAxes, ax.transData)
    offsets = {k: (i - 1) * BAR_STEP for i, (k, _) in enumerate(ENGINES)}
    segments_seen, right = set(), 100.0
    for y, request in enumerate(requests):
        totals = {k: request_total_s(groups[k][request]) if request in groups[k] else None
                  for k, _ in ENGINES}
        reference = totals["docker"] or totals["real"] or totals["sim"] or 1.0
        for key, name in ENGINES:
            if totals[key] is None:
                continue
            durations = segment_durations_s(groups[key][request])
            segments_seen |= {s for s, d in durations.items() if d > 0}
            widths = stacked_widths([durations[s] * 100.0 / reference for s in SEGMENTS],
                                    min_width)
            left, y_bar = 0.0, y + offsets[key]
            for segment, width in zip(SEGMENTS, widths):
                if width > 0:
                    ax.add_patch(Rectangle((left, y_bar - BAR_HEIGHT / 2), width, BAR_HEIGHT,
                                           zorder=3, label=bar_tag(key, segment),
                                           **engine_style(key, phase_colour(segment))))
                left += width
            right = max(right, left)
            error = None if key == "docker" or totals["docker"] is None else \
                error_pct(totals[key], totals["docker"])
            ax.text(1.02, y_bar, f"{name} {format_duration(totals[key])}{_format_error(error)}",
                    transform=column, va="center", ha="left", fontsize=14)
    ax.set_xlim(0, right * 1.02)
    ax.set_ylim(len(requests) - 0.5, -0.5)
    labels = [request_label(r, next(g[r] for g in groups.values() if r in g)) for r in requests]
    ax.set_yticks(range(len(requests)), labels)
    ax.grid(False, axis="y")
    ax.axvline(100.0, color="#333333", linestyle=":", linewidth=2, zorder=4)
    ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.set_xlabel("share of Docker's request time" if groups["docker"]
                  else "share of the measured request time")
    if title is None:
        title = "Model vs docksim vs Docker, per phase"
    if title:
        ax.set_title(title, loc="left")
    handles = [Patch(label=SEGMENT_NAMES.get(s, s), **bar_style("sim", phase_colour(s)))
               for s in SEGMENTS if s in segments_seen]
    handles += [Patch(label=name, **engine_style(key, "#FFFFFF"))
                for key, name in ENGINES if key in present_engines]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13),
              ncols=(len(handles) + 1) // 2, columnspacing=1.2)
    return ax


def engines_figure(sim_rows: list[PhaseRow], real_rows: list[PhaseRow],
                   docker_rows: list[PhaseRow], replication: int | None = 0, *,
                   title: str | None = None) -> Figure:
    """A lecture-style 16:9 figure holding one ``plot_engines``."""
    fig, ax = lecture_figure()
    with lecture_style():
        plot_engines(ax, sim_rows, real_rows, docker_rows, replication, title=title)
    return fig
