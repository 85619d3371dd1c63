"""The error report per phase, the validation verdict, and a reduced `validate` run.

The first tests use hand-made traces with hand-derived answers.  The last one is
CI's reduced validation: docksim's engine, two small shaped-link scenarios from
scenarios/validation/, measured for real (root) and held to the targets.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.phase_compare import phase_medians, phase_rows, phase_summary
from analysis.validation import all_met, tag_bandwidth_bound, verdict, wire_seconds
from harness.measure import why_not_measurable
from vocab.trace import PhaseRow

PROJECT = Path(__file__).resolve().parent.parent


def row(phase: str, start_s: float, end_s: float, replication: int = 0, request: str = "s0-c0-r0",
        layer: str = "", source: str = "real") -> PhaseRow:
    return PhaseRow(source, "model" if source == "sim" else "launcher", replication, "node-0", 0,
                    request, "pull", "a:1", phase, layer, start_s, end_s, None)


def test_phase_medians_sum_within_a_replication_then_take_the_median():
    rows = [row("download", 0.0, 1.0, 0, layer="a"), row("download", 2.0, 2.5, 0, layer="a"),  # 1.5
            row("download", 0.0, 2.0, 1, layer="a"),                                           # 2.0
            row("download", 0.0, 4.0, 2, layer="a"),                                           # 4.0
            row("resolve", 0.0, 0.1, 0), row("resolve", 0.0, 0.3, 1)]
    medians = phase_medians(rows)
    assert medians[("s0-c0-r0", "download", "a")] == pytest.approx(2.0)
    assert medians[("s0-c0-r0", "resolve", "")] == pytest.approx(0.2)


def test_phase_rows_join_both_sides_in_request_then_phase_order():
    sim = [row("extract", 1.0, 2.0, layer="a", source="sim"), row("resolve", 0.0, 0.1, source="sim"),
           row("resolve", 0.0, 0.3, request="s1-c0-r0", source="sim"),
           row("create", 0.0, 0.5, source="sim")]                      # not measured: left out
    real = [row("resolve", 0.0, 0.2), row("extract", 1.0, 3.0, layer="a"),
            row("resolve", 0.0, 0.3, request="s1-c0-r0"), row("start", 0.0, 1.0)]
    table = phase_rows(sim, real)
    assert [(r["step"], r["phase"], r["layer"]) for r in table] == [
        (0, "resolve", ""), (0, "extract", "a"), (1, "resolve", "")]
    assert table[0]["error_pct"] == pytest.approx(-50.0)   # 0.1 vs 0.2
    assert table[1]["error_pct"] == pytest.approx(-50.0)   # 1.0 vs 2.0
    assert table[2]["error_pct"] == pytest.approx(0.0)
    summary = phase_summary(table)
    assert [(s["phase"], s["count"]) for s in summary] == [("resolve", 2), ("extract", 1)]
    assert summary[0]["median_abs_error_pct"] == pytest.approx(25.0)
    assert summary[0]["worst_error_pct"] == pytest.approx(-50.0)


def test_wire_seconds_span_all_downloads_of_a_request():
    rows = [row("download", 0.5, 1.0, 0, layer="a"), row("download", 0.7, 2.5, 0, layer="b"),  # 2.0
            row("download", 0.0, 1.0, 1, layer="a"), row("download", 0.0, 0.2, 1, layer="b"),  # 1.0
            row("download", 0.0, 3.0, 2, layer="a"),                                           # 3.0
            row("resolve", 0.0, 9.0, 0, request="s1-c0-r0")]
    assert wire_seconds(rows) == {"s0-c0-r0": pytest.approx(2.0)}


def comparison(engine: str, step: int, metric: str, error_pct: float | None) -> dict:
    return {"engine": engine, "step": step, "client": 0, "repeat": 0, "metric": metric,
            "error_pct": error_pct}


def test_verdict_applies_each_bar_to_the_requests_it_covers():
    wire = {"s0-c0-r0": 2.0, "s1-c0-r0": 0.2, "s2-c0-r0": 0.1}
    rows = tag_bandwidth_bound([
        comparison("launcher", 0, "pull_s", 4.0),     # bandwidth-bound
        comparison("launcher", 1, "pull_s", -12.0),
        comparison("launcher", 2, "pull_s", 30.0),
        comparison("launcher", 2, "total_s", 90.0),   # not a target metric
        comparison("launcher", 2, "startup_s", None),  # no error to speak of
        comparison("launcher", 1, "startup_s", 8.0),
    ], wire)
    assert [r["bandwidth_bound"] for r in rows] == [True, False, False, False, False, False]
    lines = {line["target"]: line for line in verdict(rows)}
    assert lines["median |error| of pull_s"]["value_pct"] == pytest.approx(12.0)
    assert lines["median |error| of pull_s"]["met"] is False
    assert lines["median |error| of startup_s"]["value_pct"] == pytest.approx(8.0)
    assert lines["median |error| of startup_s"]["met"] is True
    assert lines["median |error|, bandwidth-bound"]["requests"] == 1
    assert lines["median |error|, bandwidth-bound"]["met"] is True
    assert lines["worst request"]["value_pct"] == pytest.approx(30.0)
    assert lines["worst request"]["met"] is False
    assert not all_met(list(lines.values()))
    # with nothing to judge, a target is neither met nor missed
    empty = verdict([{**rows[1], "error_pct": 3.0, "bandwidth_bound": False}])
    assert {line["target"]: line["met"] for line in empty}["median |error|, bandwidth-bound"] is None
    assert all_met(empty)


def test_validate_refuses_a_directory_without_scenarios(tmp_path):
    result = subprocess.run([sys.executable, str(PROJECT / "simulate.py"), "validate",
                             "--engine", "launcher", "--dir", str(tmp_path)],
                            capture_output=True, text=True)
    if why_not_measurable() is not None:
        assert result.returncode == 2 and "root" in result.stderr
        return
    assert result.returncode == 2
    assert result.stderr.strip() == f"docksim: {tmp_path}: no scenario files (*.toml)"


@pytest.mark.skipif(os.geteuid() != 0 or why_not_measurable() is not None, reason="measures: root")
def test_reduced_validation_meets_the_targets(tmp_path):
    """CI's reduced validation: one engine, two small scenarios on shaped links."""
    suite = tmp_path / "suite"
    suite.mkdir()
    for name in ("single-small.toml", "slow-link.toml"):
        shutil.copy(PROJECT / "scenarios" / "validation" / name, suite / name)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(PROJECT / "simulate.py"), "validate",
                             "--engine", "launcher", "--dir", str(suite), "--calibration", "builtin",
                             "--out", str(out)], capture_output=True, text=True, cwd=PROJECT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    with open(out / "validation-requests.csv") as handle:
        requests = list(csv.DictReader(handle))
    assert {r["scenario"] for r in requests} == {"single-small", "slow-far-link"}
    for r in requests:
        simulated, measured = float(r["simulated_s"]), float(r["measured_s"])
        assert float(r["error_pct"]) == pytest.approx(100 * (simulated - measured) / measured, abs=0.01)
    pulls = [r for r in requests if r["metric"] == "pull_s"]
    # 2.5 MB through 100 Mbit/s and 1.5 + 2 MB through 10 Mbit/s: both take their link's time
    assert all(abs(float(r["error_pct"])) <= 10 for r in pulls)
    with open(out / "validation-targets.csv") as handle:
        targets = list(csv.DictReader(handle))
    assert [t["met"] for t in targets if t["met"]] and all(t["met"] in ("True", "") for t in targets)
    with open(out / "validation-by-phase.csv") as handle:
        phases = {r["phase"] for r in csv.DictReader(handle)}
    assert {"resolve", "download", "extract", "pull", "create", "start"} <= phases
