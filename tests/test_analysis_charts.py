"""analysis charts: what gets drawn, what it is labelled, and reproducible files.

Run as a script to write the example slides:
    .venv/bin/python -m tests.test_analysis_charts /tmp/docksim-examples
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest
from matplotlib.patches import Rectangle
from PIL import Image

from analysis.charts import (comparison_figure, plot_comparison, plot_timeline, tag_of,
                             timeline_figure)
from analysis.geometry import MIN_WIDTH_FRACTION
from analysis.style import lecture_figure, save_figure
from tests.test_analysis import phase_row


def realistic_trace(source: str = "sim", k: float = 1.0, replication: int = 0) -> list:
    """A cold run of a 2-layer image, then a ~40 ms warm run; ``k`` stretches time.

    Cold: resolve 0.1 s; downloads 0.25 s (base) and 1.6 s (app) in parallel;
    extracts 0.05 s and 0.01 s; then create, start, a 3 ms run and remove.
    """
    def at(request, phase, start_s, end_s, layer=""):
        return phase_row(phase, round(start_s * k, 6), round(end_s * k, 6), request=request,
                         source=source, replication=replication, layer=layer)

    cold, warm = "s0-c0-r0", "s0-c0-r1"
    return [
        at(cold, "request", 0.0, 1.935), at(cold, "pull", 0.015, 1.755),
        at(cold, "resolve", 0.015, 0.115),
        at(cold, "download", 0.115, 0.365, "base"), at(cold, "download", 0.115, 1.715, "app"),
        at(cold, "extract", 0.365, 0.415, "base"), at(cold, "extract", 1.715, 1.725, "app"),
        at(cold, "create", 1.755, 1.790), at(cold, "start", 1.790, 1.905),
        at(cold, "run", 1.905, 1.908), at(cold, "remove", 1.908, 1.928),
        at(warm, "request", 1.940, 1.980), at(warm, "create", 1.943, 1.949),
        at(warm, "start", 1.949, 1.968), at(warm, "run", 1.968, 1.970),
        at(warm, "remove", 1.970, 1.977),
    ]


def crowd_trace(source: str, clients: int, k: float = 1.0) -> list:
    """``clients`` clients each run a 1 s container at once; the first three pull."""
    rows = []
    for client in range(clients):
        request, t0 = f"s0-c{client}-r0", 0.002 * client
        t = t0 + 1.7 * k
        if client < 3:
            rows += [phase_row("pull", t0 + 0.01, t, request=request, source=source),
                     phase_row("resolve", t0 + 0.01, t0 + 0.11, request=request, source=source),
                     phase_row("download", t0 + 0.11, t - 0.01, request=request, source=source,
                               layer="app"),
                     phase_row("extract", t - 0.01, t, request=request, source=source,
                               layer="app")]
        steps = [("create", 0.03), ("start", 0.09 + 0.004 * client), ("run", 1.0), ("remove", 0.02)]
        for phase, seconds in steps:
            rows.append(phase_row(phase, t, t + seconds * k, request=request, source=source))
            t += seconds * k
        rows.append(phase_row("request", t0, t + 0.01, request=request, source=source))
    return rows


def tagged(ax) -> Counter:
    """How many bars of each (source, phase) the chart drew."""
    return Counter(tag for tag in map(tag_of, ax.patches) if tag)


def bars(ax, source: str, phase: str) -> list[Rectangle]:
    return [p for p in ax.patches if tag_of(p) == (source, phase)]


def tick_labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_yticklabels()]


# --- timeline --------------------------------------------------------------------------

def test_timeline_draws_one_bar_per_phase_row():
    fig, ax = lecture_figure()
    rows = realistic_trace() + realistic_trace(replication=1)   # only replication 0 drawn
    plot_timeline(ax, rows)
    assert tagged(ax) == Counter({("sim", "request"): 2, ("sim", "resolve"): 1,
                                  ("sim", "download"): 2, ("sim", "extract"): 2,
                                  ("sim", "pull"): 1, ("sim", "create"): 2, ("sim", "start"): 2,
                                  ("sim", "run"): 2, ("sim", "remove"): 2})


def test_timeline_labels_lanes_layers_axis_and_legend():
    fig, ax = lecture_figure()
    plot_timeline(ax, realistic_trace("real"))
    assert tick_labels(ax) == ["s0-c0-r0 run", "resolve", "layer base", "layer app",
                               "s0-c0-r1 run"]
    assert ax.get_xlabel() == "seconds from scenario start"
    assert ax.get_title(loc="left") == "Measured timeline (replication 0)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["request (client)", "resolve", "download", "extract", "pull",
                      "create", "start", "run", "remove"]
    texts = [t.get_text() for t in ax.texts]
    assert "1.94 s" in texts and "40 ms" in texts


def test_timeline_keeps_millisecond_phases_visible_and_in_order():
    fig, ax = lecture_figure()
    plot_timeline(ax, realistic_trace())
    min_width = MIN_WIDTH_FRACTION * 1.98
    for phase in ("run", "remove", "extract"):
        assert all(p.get_width() >= min_width - 1e-12 for p in bars(ax, "sim", phase))
    cold = sorted((p for p in ax.patches if tag_of(p) and tag_of(p)[1] in
                   ("pull", "create", "start", "run", "remove") and p.get_y() < 0.5),
                  key=lambda p: p.get_x())
    assert [tag_of(p)[1] for p in cold] == ["pull", "create", "start", "run", "remove"]
    for before, after in zip(cold, cold[1:]):
        assert after.get_x() >= before.get_x() + before.get_width() - 1e-9


def test_timeline_hatches_measured_bars_only():
    fig, ax = lecture_figure()
    plot_timeline(ax, realistic_trace("sim"))
    assert not any(p.get_hatch() for p in bars(ax, "sim", "pull"))
    fig, ax = lecture_figure()
    plot_timeline(ax, realistic_trace("real"))
    assert all(p.get_hatch() for p in bars(ax, "real", "pull"))


def test_timeline_switches_to_compact_lanes_for_many_requests():
    fig, ax = lecture_figure()
    plot_timeline(ax, crowd_trace("sim", 20))
    assert tick_labels(ax) == [f"s0-c{c}-r0 run" for c in range(20)]
    assert tagged(ax)[("sim", "download")] == 3
    assert tagged(ax)[("sim", "run")] == 20
    fig, ax = lecture_figure()
    plot_timeline(ax, realistic_trace(), detail=False)
    assert tick_labels(ax) == ["s0-c0-r0 run", "s0-c0-r1 run"]


def test_timeline_picks_the_median_or_a_given_replication():
    rows = (realistic_trace(k=1.0, replication=0) + realistic_trace(k=3.0, replication=1)
            + realistic_trace(k=2.0, replication=2))
    fig, ax = lecture_figure()
    plot_timeline(ax, rows, replication=None)
    assert "replication 2" in ax.get_title(loc="left")
    fig, ax = lecture_figure()
    plot_timeline(ax, rows, replication=1, title="")
    assert ax.get_title(loc="left") == ""
    with pytest.raises(ValueError):
        plot_timeline(ax, [])


def test_timeline_of_one_late_request_zooms_on_it():
    fig, ax = lecture_figure()
    plot_timeline(ax, [row for row in realistic_trace() if row.request == "s0-c0-r1"])
    left, right = ax.get_xlim()
    assert 1.9 < left < 1.94 and right < 2.0
    assert [p.get_width() for p in bars(ax, "sim", "create")] == [pytest.approx(0.006)]
    fig, ax = lecture_figure()
    plot_timeline(ax, realistic_trace())
    assert ax.get_xlim()[0] == 0.0


# --- comparison ------------------------------------------------------------------------

def test_comparison_draws_stacked_segments_per_source():
    fig, ax = lecture_figure()
    plot_comparison(ax, realistic_trace("sim"), realistic_trace("real", 1.1))
    counts = tagged(ax)
    for source in ("sim", "real"):
        assert counts[(source, "pull")] == 1               # only the cold request pulls
        for phase in ("create", "start", "run", "remove", "client"):
            assert counts[(source, phase)] == 2, (source, phase)
        assert (source, "resolve") not in counts           # pull parts are inside pull
    assert tick_labels(ax) == ["s0-c0-r0 run", "s0-c0-r1 run"]


def bar_end(ax, source: str, lane: int) -> float:
    """Right end of the stacked bar of one source in one lane."""
    ends = [p.get_x() + p.get_width() for p in ax.patches
            if tag_of(p) and tag_of(p)[0] == source and abs(p.get_y() + p.get_height() / 2 - lane) < 0.5]
    return max(ends)


def test_comparison_normalises_to_the_measured_total_and_annotates_errors():
    fig, ax = lecture_figure()
    plot_comparison(ax, realistic_trace("sim", 1.1), realistic_trace("real", 1.0))
    for lane in (0, 1):
        assert bar_end(ax, "real", lane) == pytest.approx(100.0)
        assert bar_end(ax, "sim", lane) == pytest.approx(110.0, rel=1e-3)
    texts = [t.get_text() for t in ax.texts]
    assert "model 2.13 s (+10.0 %)" in texts and "measured 1.94 s" in texts
    assert "model 44 ms (+10.0 %)" in texts and "measured 40 ms" in texts
    assert ax.get_xlabel() == "share of the measured request time"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[-2:] == ["simulated (upper)", "measured (lower)"] and "client/API" in legend


def test_comparison_in_seconds_and_with_unmatched_requests():
    sim = realistic_trace("sim")
    real = [row for row in realistic_trace("real", 0.9) if row.request == "s0-c0-r0"]
    fig, ax = lecture_figure()
    plot_comparison(ax, sim, real, normalise=False, title="")
    assert bar_end(ax, "sim", 0) == pytest.approx(1.935)
    assert bar_end(ax, "real", 0) == pytest.approx(1.935 * 0.9)
    assert tagged(ax)[("real", "create")] == 1 and tagged(ax)[("sim", "create")] == 2
    assert "measured \u2013" in [t.get_text() for t in ax.texts]
    assert ax.get_xlabel() == "seconds"


def test_comparison_of_twenty_requests_uses_one_label_per_lane():
    fig, ax = lecture_figure()
    plot_comparison(ax, crowd_trace("sim", 20, 1.2), crowd_trace("real", 20))
    assert len(tick_labels(ax)) == 20
    assert len(ax.texts) == 20 and " vs " in ax.texts[0].get_text()


# --- files -----------------------------------------------------------------------------

def test_chart_files_are_reproducible(tmp_path):
    paths = []
    for run in ("one", "two"):
        fig = comparison_figure(realistic_trace("sim"), realistic_trace("real", 1.07))
        paths.append(save_figure(fig, tmp_path / run / "comparison"))
        fig = timeline_figure(realistic_trace("real", 1.07), title="Cold and warm")
        paths.append(save_figure(fig, tmp_path / run / "timeline"))
    for one, two in zip(paths[:2], paths[2:]):
        for a, b in zip(one, two):
            assert a.exists() and a.read_bytes() == b.read_bytes(), a.name
    assert Image.open(paths[0][0]).size == (1600, 900)


def write_examples(directory: Path) -> list[Path]:
    """The example slides, for looking at: timelines, comparisons, a crowd."""
    sim, real = realistic_trace("sim"), realistic_trace("real", 1.07)
    figures = {
        "timeline-sim": timeline_figure(sim, "Model: cold run, then warm run"),
        "timeline-real": timeline_figure(real, "Measured: cold run, then warm run"),
        "comparison": comparison_figure(sim, real),
        "crowd-timeline": timeline_figure(crowd_trace("sim", 20), "20 clients at once (model)"),
        "crowd-comparison": comparison_figure(crowd_trace("sim", 20, 1.2), crowd_trace("real", 20)),
    }
    return [save_figure(fig, directory / name)[0] for name, fig in figures.items()]


if __name__ == "__main__":
    for path in write_examples(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/docksim-examples")):
        print(path)
