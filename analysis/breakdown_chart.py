"""The breakdown chart: where each request's time went, phase by phase.

One horizontal stacked bar per request (in request-id order), split into
``BREAKDOWN`` segments that add up exactly to the request's ``total_s``:

* ``resolve``: the registry round trips before any layer;
* ``download wait``: the rest of the pull while a layer download was in
  flight, or nothing was (a download slot, another pull's transfer, the
  image record at the end);
* ``extract``: time in the pull when only extraction ran, no download: what
  a faster disk or CPU could save (extraction that overlaps a download is
  hidden behind it, as in an engine that extracts while the blob streams);
* ``create``, ``start``, ``run``, ``remove``: the daemon's container phases;
* ``client/API``: what is left -- the SDK's calls over the unix socket.

With a measured trace too, each request gets two bars side by side: the
model's (upper, solid) and the measurement's (lower, hatched, dashed edge).
What it makes visible: a cold ``docker run`` is almost all download wait; a
cached one is start, remove and API round trips; ``rmi`` is nearly all API.

``normalise=None`` (default) draws seconds, unless the request totals differ
by more than ``NORMALISE_SPAN`` x; then every bar is a share of its own
request (100 %), so a 40 ms cached run is as readable as a 2 s pull; the
totals in seconds are printed at the right either way.
"""
from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import PercentFormatter

from analysis.geometry import MIN_WIDTH_FRACTION, stacked_widths
from analysis.pulls import phase_row
from analysis.select import by_request, request_label, request_total_s, resolve_replication
from analysis.style import (CLIENT_COLOUR, PHASE_COLOURS, bar_style, bar_tag, format_duration,
                            lecture_figure, lecture_style)
from vocab.trace import PhaseRow, parse_request_id

BREAKDOWN = ("resolve", "download wait", "extract", "create", "start", "run", "remove",
             "client/API")
COLOURS = {"resolve": PHASE_COLOURS["resolve"], "download wait": PHASE_COLOURS["download"],
           "extract": PHASE_COLOURS["extract"], "create": PHASE_COLOURS["create"],
           "start": PHASE_COLOURS["start"], "run": PHASE_COLOURS["run"],
           "remove": PHASE_COLOURS["remove"], "client/API": CLIENT_COLOUR}
NORMALISE_SPAN = 10.0
MAX_REQUESTS = 16        # more: one mean bar per kind of request
BAR_HEIGHT, BAR_OFFSET = 0.36, 0.2


def _pull_split_s(pull: PhaseRow, after_s: float, pool: list[PhaseRow]) -> tuple[float, float]:
    """(download wait, extract) seconds of a pull after ``after_s`` (the resolve's end).

    The pull's own layer rows and those of the transfers it waited for (same
    node and image, ending within the pull) are swept: a moment with a
    download in flight, or with nothing in flight, is download wait; a moment
    with only an extraction running is extract.
    """
    def mine(r: PhaseRow) -> bool:
        return (r.replication == pull.replication and r.node == pull.node and r.image == pull.image
                and r.end_s > after_s and r.start_s < pull.end_s
                and (r.request == pull.request or r.end_s <= pull.end_s))
    spans = {phase: [(max(r.start_s, after_s), min(r.end_s, pull.end_s)) for r in pool
                     if r.phase == phase and mine(r)] for phase in ("download", "extract")}
    cuts = sorted({after_s, pull.end_s} | {x for v in spans.values() for span in v for x in span})
    extract = 0.0
    for a, b in zip(cuts, cuts[1:]):
        middle = (a + b) / 2
        if any(x <= middle < y for x, y in spans["extract"]) and \
                not any(x <= middle < y for x, y in spans["download"]):
            extract += b - a
    return max(0.0, pull.end_s - after_s - extract), extract


def breakdown_s(rows: list[PhaseRow], everything: list[PhaseRow] | None = None) -> dict[str, float]:
    """Seconds per segment of one request's rows; the values sum to its total_s.

    everything: the trace's rows, to count extractions of layers this pull
    waited for that another request's pull fetched (concurrent pulls).
    """
    out = {segment: 0.0 for segment in BREAKDOWN}
    total = request_total_s(rows)
    pull, resolve = phase_row(rows, "pull"), phase_row(rows, "resolve")
    if pull is not None:
        out["resolve"] = resolve.duration_s if resolve else 0.0
        after_s = resolve.end_s if resolve else pull.start_s
        out["download wait"], out["extract"] = _pull_split_s(
            pull, after_s, everything if everything is not None else rows)
    for phase in ("create", "start", "run", "remove"):
        out[phase] = sum(r.duration_s for r in rows if r.phase == phase)
    named = sum(out.values())
    out["client/API"] = total - named
    if out["client/API"] < 0:   # overlapping phases in a measured trace: keep the sum exact
        out["client/API"] = 0.0
        scale = total / named if named else 0.0
        out = {k: v * scale for k, v in out.items()}
    return out


def _draw(ax: Axes, source: str, y: float, parts: dict[str, float], scale: float,
          min_width: float) -> None:
    widths = [parts[s] * scale for s in BREAKDOWN]
    drawn = stacked_widths(widths, min_width)
    if abs(sum(drawn) - sum(widths)) > 1e-12:   # could not keep the total: true widths
        drawn = widths
    left = 0.0
    for segment, width in zip(BREAKDOWN, drawn):
        if width > 0:
            ax.add_patch(Rectangle((left, y - BAR_HEIGHT / 2), width, BAR_HEIGHT, zorder=3,
                                   label=bar_tag(source, segment),
                                   **bar_style(source, COLOURS[segment])))
        left += width


def _lanes(groups: list[tuple[str, list, dict]]) -> list[tuple[str, dict[str, tuple]]]:
    """(label, trace index -> (parts, total)) per lane: a request each, or, with more than
    ``MAX_REQUESTS`` requests, the mean of each kind of request (command, pulled or not)."""
    requests = sorted({r for _, _, g in groups for r in g}, key=parse_request_id)
    if len(requests) <= MAX_REQUESTS:
        return [(request_label(r, next(g[r] for _, _, g in groups if r in g)),
                 {i: (breakdown_s(g[r], rows), request_total_s(g[r]))
                  for i, (_, rows, g) in enumerate(groups) if r in g}) for r in requests]
    kinds: dict[tuple, dict[int, list]] = {}
    for i, (_, rows, g) in enumerate(groups):
        for r, group in g.items():
            pulled = any(row.phase == "pull" for row in group)
            kind = (group[0].command, pulled if group[0].command == "run" else None)
            kinds.setdefault(kind, {}).setdefault(i, []).append(
                (breakdown_s(group, rows), request_total_s(group)))
    lanes = []
    for (command, pulled), by_source in sorted(kinds.items(), key=lambda kv: str(kv[0])):
        n = max(len(v) for v in by_source.values())
        what = "" if pulled is None else (", pulled" if pulled else ", cached")
        means = {i: ({s: sum(p[s] for p, _ in items) / len(items) for s in BREAKDOWN},
                     sum(t for _, t in items) / len(items))
                 for i, items in by_source.items()}
        lanes.append((f"{command}{what}\n(mean of {n})", means))
    return lanes


def plot_breakdown(ax: Axes, sim_rows: list[PhaseRow], real_rows: list[PhaseRow] | None = None,
                   replication: int | None = 0, *, normalise: bool | None = None,
                   title: str | None = None) -> Axes:
    """Draw the stacked phases of every request on ``ax`` (see the module docstring).

    sim_rows: a trace (simulated, or any); real_rows: a second (measured)
    trace drawn below it.  replication: None takes each trace's median one.
    More than ``MAX_REQUESTS`` requests are drawn as one mean bar per kind of
    request (e.g. "run, pulled (mean of 312)").  Returns ``ax``.
    """
    traces = [(rows[0].source, list(rows)) for rows in (list(sim_rows), list(real_rows or []))
              if rows]
    if not traces:
        raise ValueError("plot_breakdown: no rows")
    groups = [(source, rows, by_request(rows, resolve_replication(rows, replication)))
              for source, rows in traces]
    lanes = _lanes(groups)
    totals = [total for _, bars in lanes for _, total in bars.values()]
    if normalise is None:
        normalise = max(totals) > NORMALISE_SPAN * max(min(totals), 1e-9)
    end = 100.0 if normalise else max(totals)
    min_width = MIN_WIDTH_FRACTION * end
    offsets = [0.0] if len(groups) == 1 else [-BAR_OFFSET, BAR_OFFSET]
    present = set()
    for y, (_, bars) in enumerate(lanes):
        for i, (parts, total) in bars.items():
            source, dy = groups[i][0], offsets[i]
            present |= {s for s, v in parts.items() if v > 0}
            _draw(ax, source, y + dy, parts, 100.0 / total if normalise and total else 1.0,
                  min_width)
            ax.text(1.01, y + dy, format_duration(total), transform=ax.get_yaxis_transform(),
                    va="center", ha="left", fontsize=15 if len(groups) > 1 else 16)
    ax.set_yticks(range(len(lanes)), [label for label, _ in lanes])
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    ax.set_xlim(0, end * 1.01)
    ax.grid(False, axis="y")
    if normalise:
        ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
        ax.set_xlabel("share of the request's time (its total at the right)")
    else:
        ax.set_xlabel("seconds")
    if title is None:
        title = "Where the time of each request goes"
    if title:
        ax.set_title(title, loc="left")
    handles = [Patch(label=s, **bar_style("sim", COLOURS[s])) for s in BREAKDOWN if s in present]
    if len(groups) > 1:
        handles += [Patch(label="simulated (upper)", **bar_style("sim", "#FFFFFF")),
                    Patch(label="measured (lower)", **bar_style("real", "#FFFFFF"))]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13),
              ncols=min(len(handles), 5), columnspacing=1.2)
    return ax


def breakdown_figure(sim_rows: list[PhaseRow], real_rows: list[PhaseRow] | None = None,
                     replication: int | None = 0, *, normalise: bool | None = None,
                     title: str | None = None) -> Figure:
    """A lecture-style 16:9 figure holding one ``plot_breakdown``."""
    fig, ax = lecture_figure()
    with lecture_style():
        plot_breakdown(ax, sim_rows, real_rows, replication, normalise=normalise, title=title)
    return fig
