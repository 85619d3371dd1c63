"""analysis: the comparison table, trace selection, layout geometry and the style."""
from __future__ import annotations

import csv
import io
import json

import matplotlib as mpl
import pytest
from PIL import Image

from analysis.compare import (COLUMNS, comparison_rows, error_pct, error_table,
                              format_comparison_csv, format_table, load_summary,
                              write_comparison_csv)
from analysis.geometry import sequential_bars, stacked_widths
from analysis.select import (by_request, median_replication, request_label,
                             resolve_replication, segment_durations_s)
from analysis.style import (PHASE_COLOURS, STYLE_PATH, bar_style, format_duration,
                            hatch_colour, lecture_figure, save_figure)
from vocab.trace import PHASES, PhaseRow, summarize


def phase_row(phase: str, start_s: float, end_s: float, *, request: str = "s0-c0-r0",
              source: str = "sim", replication: int = 0, layer: str = "",
              command: str = "run") -> PhaseRow:
    """A trace row with the boring columns filled in."""
    client = int(request.split("-")[1][1:])
    return PhaseRow(source=source, engine="model" if source == "sim" else "launcher",
                    replication=replication, node="node0", client=client, request=request,
                    command=command, image="lecture/hello:1", phase=phase, layer=layer,
                    start_s=start_s, end_s=end_s, bytes=None)


def item(step, client, repeat, command="run", **metrics) -> dict:
    """One request entry of a summary.json document."""
    entry = {"step": step, "client": client, "repeat": repeat, "command": command,
             "image": "lecture/hello:1", "pull_s": None, "startup_s": None, "total_s": None}
    entry.update(metrics)
    return entry


def summary(source: str, *items: dict) -> dict:
    return {"scenario": "t", "source": source, "engine": "x", "replications": 1,
            "requests": list(items)}


# --- comparison rows -----------------------------------------------------------------

def test_rows_have_exactly_the_columns_and_the_relative_error():
    rows = comparison_rows(summary("sim", item(0, 0, 0, total_s=1.1)),
                           summary("real", item(0, 0, 0, total_s=1.0)))
    assert len(rows) == 1
    assert tuple(rows[0]) == COLUMNS
    assert rows[0]["metric"] == "total_s"
    assert rows[0]["error_pct"] == pytest.approx(10.0)
    assert format_comparison_csv(rows).splitlines()[1] == "0,0,0,total_s,1.100000,1.000000,10.00"


def test_negative_error_when_the_model_is_faster():
    rows = comparison_rows(summary("sim", item(1, 2, 0, pull_s=0.75)),
                           summary("real", item(1, 2, 0, pull_s=1.0)))
    assert rows[0]["error_pct"] == pytest.approx(-25.0)
    assert format_comparison_csv(rows).splitlines()[1] == "1,2,0,pull_s,0.750000,1.000000,-25.00"


def test_metrics_missing_on_either_side_and_unmatched_requests_are_skipped():
    sim = summary("sim", item(0, 0, 0, pull_s=1.0, startup_s=None, total_s=2.0),
                  item(0, 1, 0, total_s=5.0))            # not measured at all
    real = summary("real", item(0, 0, 0, pull_s=0.5, startup_s=1.5, total_s=None))
    rows = comparison_rows(sim, real)
    assert [(r["client"], r["metric"]) for r in rows] == [(0, "pull_s")]


def test_measured_zero_gives_no_error_and_an_empty_csv_cell():
    rows = comparison_rows(summary("sim", item(0, 0, 1, pull_s=0.0, total_s=0.05)),
                           summary("real", item(0, 0, 1, pull_s=0.0, total_s=0.04)))
    assert [r["metric"] for r in rows] == ["pull_s", "total_s"]
    assert rows[0]["error_pct"] is None
    assert rows[1]["error_pct"] == pytest.approx(25.0)
    assert format_comparison_csv(rows).splitlines()[1] == "0,0,1,pull_s,0.000000,0.000000,"
    assert error_pct(0.3, 0.0) is None


def test_rows_come_in_request_then_metric_order():
    sim = summary("sim", item(1, 0, 0, pull_s=1.0, startup_s=1.0, total_s=1.0),
                  item(0, 1, 0, total_s=1.0), item(0, 0, 1, total_s=1.0))
    real = summary("real", item(0, 0, 1, total_s=2.0), item(1, 0, 0, pull_s=2.0, startup_s=2.0,
                                                               total_s=2.0), item(0, 1, 0, total_s=2.0))
    keys = [(r["step"], r["client"], r["repeat"], r["metric"]) for r in comparison_rows(sim, real)]
    assert keys == [(0, 0, 1, "total_s"), (0, 1, 0, "total_s"), (1, 0, 0, "pull_s"),
                    (1, 0, 0, "startup_s"), (1, 0, 0, "total_s")]


def test_summaries_built_from_hand_made_traces_compare_end_to_end(tmp_path):
    def trace(source, k):
        return [phase_row("request", 0.0, 2.0 * k, source=source),
                phase_row("pull", 0.1, 1.1 * k, source=source),
                phase_row("start", 1.2 * k, 1.5 * k, source=source),
                phase_row("request", 3.0, 3.0 + 0.04 * k, request="s0-c0-r1", source=source),
                phase_row("start", 3.01, 3.01 + 0.02 * k, request="s0-c0-r1", source=source)]
    sim_doc = summarize(trace("sim", 1.1), "t", "sim", "model", 1)
    real_doc = summarize(trace("real", 1.0), "t", "real", "launcher", 1)
    (tmp_path / "sim.json").write_text(json.dumps(sim_doc))
    rows = comparison_rows(load_summary(tmp_path / "sim.json"), real_doc)
    by = {(r["repeat"], r["metric"]): r for r in rows}
    assert by[(0, "total_s")]["error_pct"] == pytest.approx(10.0)
    assert by[(0, "pull_s")]["simulated_s"] == pytest.approx(1.11)
    assert by[(0, "pull_s")]["error_pct"] == pytest.approx(100 * (1.11 - 1.0) / 1.0)
    assert by[(1, "pull_s")]["error_pct"] is None          # warm: nothing pulled on either side
    assert by[(1, "startup_s")]["measured_s"] == pytest.approx(0.03)

    path = write_comparison_csv(rows, tmp_path / "comparison.csv")
    parsed = list(csv.DictReader(io.StringIO(path.read_text())))
    assert tuple(parsed[0]) == COLUMNS and len(parsed) == len(rows)
    assert path.read_text() == format_comparison_csv(rows)


def test_error_table_reports_median_absolute_and_worst_signed_error():
    sim = summary("sim", item(0, 0, 0, total_s=1.1, pull_s=0.0), item(0, 1, 0, total_s=0.7),
                  item(0, 2, 0, total_s=1.02))
    real = summary("real", item(0, 0, 0, total_s=1.0, pull_s=0.0), item(0, 1, 0, total_s=1.0),
                   item(0, 2, 0, total_s=1.0))
    table = error_table(comparison_rows(sim, real))
    assert [t["metric"] for t in table] == ["pull_s", "total_s"]
    pull, total = table
    assert pull == {"metric": "pull_s", "count": 0, "median_abs_error_pct": None,
                    "worst_error_pct": None, "worst_request": None}
    assert total["count"] == 3
    assert total["median_abs_error_pct"] == pytest.approx(10.0)
    assert total["worst_error_pct"] == pytest.approx(-30.0)
    assert total["worst_request"] == "s0-c1-r0"


def test_format_table_aligns_columns_and_signs_errors():
    rows = comparison_rows(summary("sim", item(0, 0, 0, pull_s=0.0, total_s=1.1)),
                           summary("real", item(0, 0, 0, pull_s=0.0, total_s=1.0)))
    text = format_table(rows)
    lines = text.splitlines()
    assert lines[0].split() == list(COLUMNS)
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].endswith("-") and lines[3].endswith("+10.00 %")
    assert "1.100000" in lines[3]
    assert len({len(line) for line in lines}) == 1        # right-aligned last column
    assert "-30.00 %" in format_table([{"metric": "total_s", "worst_error_pct": -30.0}])
    assert format_table([]) == ""


# --- selection and geometry ------------------------------------------------------------

def test_median_replication_and_its_check():
    rows = [phase_row("request", 0, total, replication=rep)
            for rep, total in [(0, 3.0), (1, 1.0), (2, 2.0), (3, 4.0)]]
    assert median_replication(rows) == 2       # totals 1, 2, 3, 4: the lower middle one
    assert resolve_replication(rows, None) == 2
    assert resolve_replication(rows, 3) == 3
    with pytest.raises(ValueError, match="replication 7"):
        resolve_replication(rows, 7)


def test_segments_put_the_unnamed_rest_of_the_request_in_client():
    rows = [phase_row("request", 0.0, 2.0), phase_row("pull", 0.1, 1.1),
            phase_row("resolve", 0.1, 0.2), phase_row("create", 1.1, 1.2),
            phase_row("start", 1.2, 1.5), phase_row("run", 1.5, 1.6)]
    durations = segment_durations_s(rows)
    assert durations["pull"] == pytest.approx(1.0)
    assert durations["remove"] == 0.0
    assert durations["client"] == pytest.approx(2.0 - 1.0 - 0.1 - 0.3 - 0.1)
    groups = by_request(rows + [phase_row("request", 5, 6, request="s0-c0-r1")], 0)
    assert list(groups) == ["s0-c0-r0", "s0-c0-r1"]
    assert request_label("s0-c0-r1", groups["s0-c0-r1"]) == "s0-c0-r1 run"


def test_sequential_bars_widen_small_bars_and_push_the_next_ones():
    drawn = sequential_bars([(0.0, 1.0), (1.0, 1.001), (1.001, 1.002), (1.002, 2.0)], 0.01)
    assert drawn[0] == (0.0, 1.0)
    assert drawn[1] == pytest.approx((1.0, 0.01))
    assert drawn[2] == pytest.approx((1.01, 0.01))      # pushed after the widened one
    assert drawn[3][0] == pytest.approx(1.02)
    # true overlap is kept; input order is kept
    assert sequential_bars([(0.5, 0.9), (0.0, 1.0)], 0.01) == [(0.5, 0.4), (0.0, 1.0)]


def test_stacked_widths_keep_the_total_and_show_every_segment():
    drawn = stacked_widths([90.0, 0.1, 0.0, 0.2, 9.7], 1.0)
    assert drawn[1] == drawn[3] == 1.0 and drawn[2] == 0.0
    assert sum(drawn) == pytest.approx(100.0)
    assert drawn[0] == pytest.approx(88.3)
    tiny = stacked_widths([0.1, 0.2], 1.0)                   # nothing to borrow from: grows
    assert tiny == [1.0, 1.0]


# --- style -----------------------------------------------------------------------------

def test_every_phase_has_its_own_colour_and_sources_differ_beyond_colour():
    assert tuple(PHASE_COLOURS) == PHASES
    assert len(set(PHASE_COLOURS.values())) == len(PHASES)
    sim, real = bar_style("sim", "#0072B2"), bar_style("real", "#0072B2")
    assert "hatch" not in sim and real["hatch"] and real["linestyle"] != "solid"
    assert hatch_colour("#000000") == "#FFFFFF" and hatch_colour("#F0E442") == "#000000"
    assert [format_duration(s) for s in (0.0042, 0.041, 2.071)] == ["4.2 ms", "41 ms", "2.07 s"]


def test_style_sheet_has_lecture_sizes():
    rc = mpl.rc_params_from_file(STYLE_PATH, use_default_template=False)
    assert rc["xtick.labelsize"] >= 16 and rc["ytick.labelsize"] >= 16
    assert rc["axes.labelsize"] >= 18 and rc["axes.titlesize"] >= 22
    width, height = rc["figure.figsize"]
    assert width / height == pytest.approx(16 / 9, rel=1e-3)


def test_save_figure_writes_identical_bytes_twice(tmp_path):
    def figure():
        fig, ax = lecture_figure()
        ax.plot([0, 1, 2], [0, 1, 4], label="x")
        ax.set_title("reproducible")
        return fig

    first = save_figure(figure(), tmp_path / "a" / "hello.timeline", pdf=True)
    second = save_figure(figure(), tmp_path / "b" / "hello.timeline", pdf=True)
    assert [p.name for p in first] == ["hello.timeline.png", "hello.timeline.svg",
                                       "hello.timeline.pdf"]
    for one, two in zip(first, second):
        assert one.read_bytes() == two.read_bytes(), one.name
    assert b"<dc:date>" not in first[1].read_bytes()
    assert b"CreationDate" not in first[2].read_bytes()
    assert Image.open(first[0]).size == (1600, 900)
    assert [p.suffix for p in save_figure(figure(), tmp_path / "c")] == [".png", ".svg"]
