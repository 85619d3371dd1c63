"""The sequence diagram: who talks to whom during one ``docker run``, and when.

Four lifelines, left to right: the **client** (the Docker SDK), the **daemon**
(dockerd), the **registry** and the **runtime** (what starts the container's
process).  Time runs down.

* Each Engine API call is a solid arrow from the client to the daemon, named
  in the left margin the way the SDK sends it (``POST /containers/create``);
  its answer comes back dashed, with its status when it matters (``404``).
  The unix socket takes a couple of milliseconds, so these arrows are flat.
* Each HTTP request of the pull is a slanted arrow from the daemon to the
  registry, named where it arrives (``GET /v2/``, the manifest, ``GET blob
  app``): its slope is the network's round trip.  Each layer blob streams
  back as a thick blue arrow whose length in time is its download.
* Coloured boxes are the trace's phases on the lifeline that does the work:
  pull, resolve, extract, create and remove in the daemon; start and run in
  the runtime.

What it makes visible: ``docker run`` of a missing image first gets a 404;
the client then pulls (``POST /images/create``) and creates again; the pull
asks the registry three things before any layer; layers download in parallel
but are extracted one after the other, bottom first; and the ten API calls of
a run cost milliseconds next to the pull's seconds.

How the calls are derived from the trace is in ``analysis.sequence_calls``.
Readability: y is time, stretched where messages follow each other within
milliseconds so each label gets its own line; the y tick labels are exact
(milliseconds after the request was sent).  One request is drawn (``request``;
default: the first ``run`` that pulled).
"""
from __future__ import annotations

from dataclasses import replace

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

from analysis.sequence_calls import Activation, Message, derive_sequence
from analysis.style import (DPI, SOURCE_NAMES, bar_style, format_duration, lecture_figure,
                            lecture_style, phase_colour)
from vocab.trace import PhaseRow

LIFELINES = ("client", "daemon", "registry", "runtime")
HEADS = {"client": "client\n(Docker SDK)", "daemon": "daemon\n(dockerd)",
         "registry": "registry", "runtime": "runtime"}
X = {name: i for i, name in enumerate(LIFELINES)}
LABEL_PX, NOTE_PX, SMALL_PX = 29.0, 25.0, 9.0   # room above an event: a label, a note, an arrow
LABEL_SIZE, NOTE_SIZE = 15, 13
ARROW_GID, LABEL_GID = "sequence-arrow", "sequence-label"
_FLAT = ("call", "answer", "runtime")   # unix socket / in-host: drawn flat at the send time
_PLAIN = ("200", "204")                 # answers not worth a text line
_MARGIN = -0.08                         # x of the call labels: just left of the client
MAX_LAYER_LINES = 4                     # more layers: one label for all (see _brief)


class _TimeAxis:
    """Time -> y in pixels: linear, but each event gets the room its text needs."""

    def __init__(self, events: list[tuple[float, float]], height_px: float):
        merged: dict[float, float] = {}
        for t, need in events:
            merged[round(t, 9)] = max(merged.get(round(t, 9), 0.0), need)
        self.times = sorted(merged)
        needs = [merged[t] for t in self.times][1:]
        gaps = [b - a for a, b in zip(self.times, self.times[1:])]
        target = max(height_px, sum(needs) + 40.0)
        low, high = 0.0, 1.0
        while sum(max(n, high * g) for n, g in zip(needs, gaps)) < target and high < 1e15:
            high *= 2
        for _ in range(80):
            mid = (low + high) / 2
            low, high = (mid, high) if sum(max(n, mid * g) for n, g in zip(needs, gaps)) < target \
                else (low, mid)
        self.scale = high
        self.ys = [0.0]
        for need, gap in zip(needs, gaps):
            self.ys.append(self.ys[-1] + max(need, self.scale * gap))

    def __call__(self, t: float) -> float:
        times, ys = self.times, self.ys
        for i in range(1, len(times)):
            if t <= times[i]:
                a, b = times[i - 1], times[i]
                share = max(t - a, 0.0) / (b - a) if b > a else 1.0
                return ys[i - 1] + (ys[i] - ys[i - 1]) * share
        return ys[-1] + (t - times[-1]) * self.scale


def _staggered(messages: list[Message]) -> list[Message]:
    """Labelled messages sent at one moment (the blob GETs of parallel downloads)
    get a line each: the later ones are drawn a microsecond later."""
    seen: dict[float, int] = {}
    out = []
    for m in messages:
        if m.label:
            k = seen.get(round(m.send_s, 9), 0)
            seen[round(m.send_s, 9)] = k + 1
            if k:
                m = replace(m, send_s=m.send_s + k * 1e-6, recv_s=m.recv_s + k * 1e-6)
        out.append(m)
    return out


def _brief(messages: list[Message], boxes: list[Activation]):
    """With more than ``MAX_LAYER_LINES`` layers, one label for all blob GETs, a note
    on the largest blob only, and one label for all extractions (else they overlap).

    Returns (messages, boxes, (start_s, end_s, text) of the extractions' label or None).
    """
    gets = [m for m in messages if m.kind == "http" and m.label.startswith("GET blob ")
            and m.label != "GET blob config"]
    if len(gets) <= MAX_LAYER_LINES:
        return messages, boxes, None
    largest = max((m for m in messages if m.kind == "blob"), key=lambda m: m.bytes)
    first = min(gets, key=lambda m: m.send_s)
    out = []
    for m in messages:
        if m in gets:
            m = replace(m, label=f"GET blob \u00d7 {len(gets)} (a layer each)" if m is first else "")
        elif m.kind == "blob" and m is not largest:
            m = replace(m, note="")
        out.append(m)
    extracts = [b for b in boxes if b.phase == "extract"]
    summary = None
    if extracts:
        took = format_duration(sum(b.end_s - b.start_s for b in extracts))
        summary = (min(b.start_s for b in extracts), max(b.end_s for b in extracts),
                   f"extract {len(extracts)} layers\n{took}, one after another")
    boxes = [replace(b, label="") if b.phase == "extract" else b for b in boxes]
    return out, boxes, summary


def _events(messages: list[Message], boxes: list[Activation]) -> list[tuple[float, float]]:
    events = []
    for m in messages:
        if m.kind in _FLAT:
            note = m.note and m.note not in _PLAIN
            events.append((m.send_s, LABEL_PX if m.label else NOTE_PX if note else SMALL_PX))
        else:   # to the registry: named where it arrives; blobs: noted where they end
            events += [(m.send_s, SMALL_PX),
                       (m.recv_s, LABEL_PX if m.label or m.note else SMALL_PX)]
    for box in boxes:   # an extract's label sits beside it: consecutive ones need a line each
        events += [(box.start_s, SMALL_PX),
                   (box.end_s, LABEL_PX if box.phase == "extract" and box.label else SMALL_PX)]
    return events


def _arrow(ax: Axes, m: Message, y, colour: str, **style) -> None:
    end_s = m.send_s if m.kind in _FLAT else m.recv_s
    ax.add_patch(FancyArrowPatch((X[m.sender], y(m.send_s)), (X[m.receiver], y(end_s)),
                                 arrowstyle="-|>", mutation_scale=22, color=colour, shrinkA=0,
                                 shrinkB=2, zorder=4, gid=f"{ARROW_GID}:{m.kind}", **style))


def _text(ax: Axes, x: float, y: float, text: str, **kw) -> None:
    ax.text(x, y, text, gid=LABEL_GID, zorder=5, **{"fontsize": LABEL_SIZE, "va": "center", **kw})


def _draw_boxes(ax: Axes, boxes: list[Activation], y, source: str) -> None:
    for box in boxes:
        width = 0.09 if box.phase == "pull" else 0.15
        top, low = y(box.start_s), y(box.end_s)
        ax.add_patch(Rectangle((X[box.lifeline] - width / 2, top), width, max(low - top, 4.0),
                               zorder=2 if box.phase == "pull" else 3,
                               gid=f"sequence-box:{box.phase}",
                               **bar_style(source, phase_colour(box.phase))))
        middle = (top + low) / 2
        if box.phase == "pull":   # the client waits all along for this call's answer
            ax.add_patch(Rectangle((X["client"] - 0.03, top), 0.06, low - top, zorder=2,
                                   facecolor=phase_colour("pull"), alpha=0.35, linewidth=0))
            waited = format_duration(box.end_s - box.start_s)
            _text(ax, _MARGIN, middle, f"waits {waited}\nfor the pull", ha="right",
                  color=phase_colour("pull"), fontweight="bold")
        elif box.phase in ("extract", "resolve") and box.label:
            _text(ax, X["daemon"] - 0.1, middle, box.label, ha="right", fontsize=NOTE_SIZE)
        elif box.phase in ("create", "remove", "start", "run"):
            _text(ax, X[box.lifeline] + 0.11, middle, box.label, ha="left", fontsize=NOTE_SIZE)


def _draw_messages(ax: Axes, messages: list[Message], y) -> None:
    for m in messages:
        if m.kind == "blob":
            _arrow(ax, m, y, phase_colour("download"), linewidth=4.5)
            if m.note:
                _text(ax, X["daemon"] + 0.1, y(m.recv_s) - 2, m.note, ha="left", va="bottom",
                      fontsize=NOTE_SIZE, color="#1F5F8B", fontweight="bold")
            continue
        dashed = m.kind in ("answer", "http-answer")
        _arrow(ax, m, y, "#555555" if dashed else "#000000", linewidth=1.6 if dashed else 2.2,
               linestyle=(0, (4, 3)) if dashed else "solid")
        if m.kind == "call":
            _text(ax, _MARGIN, y(m.send_s), m.label, ha="right")
        elif m.kind == "http" and m.label:
            _text(ax, X["registry"] + 0.06, y(m.recv_s), m.label, ha="left")
        elif m.label:   # to the runtime: above the arrow, where nothing else is
            _text(ax, (X[m.sender] + X[m.receiver]) / 2, y(m.send_s) - 3, m.label,
                  ha="center", va="bottom")
        if m.note and m.note not in _PLAIN:
            if m.kind == "answer":
                _text(ax, _MARGIN, y(m.send_s), f"\u2190 {m.note}", ha="right",
                      fontsize=NOTE_SIZE, fontstyle="italic", color="#333333")
            else:
                _text(ax, (X[m.sender] + X[m.receiver]) / 2, y(m.send_s) - 3, m.note,
                      ha="center", va="bottom", fontsize=NOTE_SIZE, fontstyle="italic")


def _time_ticks(ax: Axes, y, messages: list[Message], origin_s: float) -> None:
    """Ticks at the client's calls and the blobs' arrivals, a line apart at least."""
    moments = sorted({m.send_s for m in messages if m.kind == "call"}
                     | {m.recv_s for m in messages if m.kind == "blob"})
    ticks, labels = [], []
    for t in moments:
        since = t - origin_s
        label = "0" if since < 5e-7 else f"{since:.3f} s" if since >= 1 else format_duration(since)
        if not ticks or (y(t) - ticks[-1] >= 26 and label != labels[-1]):
            ticks.append(y(t))
            labels.append(label)
    ax.set_yticks(ticks, labels, fontsize=14)
    ax.tick_params(axis="y", length=4)


def plot_sequence(ax: Axes, rows: list[PhaseRow], request: str | None = None,
                  replication: int = 0, title: str | None = None, *,
                  auth: str = "none") -> Axes:
    """Draw one request as a sequence diagram on ``ax`` (see the module docstring).

    request: the request id (``s0-c0-r0``); None takes the first ``run`` that
        pulled.  auth: the registry's ``[registry] auth``; ``"token"`` adds
        the token request to the resolve.  Returns ``ax``.
    """
    rows = list(rows)
    request, messages, boxes = derive_sequence(rows, request, replication, auth=auth)
    source = next(r.source for r in rows if r.request == request)
    messages, boxes, extracts = _brief(_staggered(messages), boxes)
    height_px = ax.figure.get_size_inches()[1] * DPI * 0.74
    y = _TimeAxis(_events(messages, boxes), height_px)
    bottom = y.ys[-1] + 14
    for name in LIFELINES:
        ax.plot([X[name], X[name]], [-40, bottom], color="#777777", linewidth=1.5,
                linestyle=(0, (5, 4)), zorder=1)
        ax.text(X[name], -40, HEADS[name], ha="center", va="bottom", fontsize=18,
                fontweight="bold", zorder=6,
                bbox={"boxstyle": "round,pad=0.35", "facecolor": "#F2F2F2", "edgecolor": "#333333"})
    _draw_boxes(ax, boxes, y, source)
    if extracts:
        _text(ax, X["daemon"] - 0.1, (y(extracts[0]) + y(extracts[1])) / 2, extracts[2],
              ha="right", fontsize=NOTE_SIZE)
    _draw_messages(ax, messages, y)
    origin_s = min(m.send_s for m in messages)
    _time_ticks(ax, y, messages, origin_s)
    ax.set_xlim(-1.85, X["runtime"] + 0.72)
    ax.set_ylim(bottom, -128)
    ax.set_xticks([])
    ax.grid(False)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_ylabel("time after the request was sent", fontsize=16)
    if title is None:
        image = next(r.image for r in rows if r.request == request)
        command = next(r.command for r in rows if r.request == request)
        title = f"docker {command} {image}: {request} ({SOURCE_NAMES.get(source, source)})"
    if title:
        ax.set_title(title, loc="left")
    return ax


def sequence_figure(rows: list[PhaseRow], request: str | None = None, replication: int = 0,
                    title: str | None = None, *, auth: str = "none") -> Figure:
    """A lecture-style 16:9 figure holding one ``plot_sequence``."""
    fig, ax = lecture_figure()
    with lecture_style():
        plot_sequence(ax, rows, request, replication, title, auth=auth)
    return fig
