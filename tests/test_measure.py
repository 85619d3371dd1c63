"""The measured end-to-end run: `harness.measure.measure` (registry and daemon as
real processes, clients through the Docker SDK) and `simulate.py compare`.

These check what the rows mean and what physics allows, not how accurate the
model is: accuracy targets live in bench/.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness.measure import cache_dir, measure
from registry.builder import build_images
from tests.conftest import REPO_ROOT, overlay_mounts_under
from vocab.scenario import parse_scenario
from vocab.trace import METRICS

BANDWIDTH_MBPS = 80
RTT_S = 0.010
ROUNDING_S = 2e-6  # trace times carry 6 decimals: a difference may lose up to 1 µs each

SCENARIO = f"""
[scenario]
name = "measure-test"
replications = 2

[network]
bandwidth_mbps = {BANDWIDTH_MBPS}
rtt_ms = {RTT_S * 1000:g}

[[image]]
ref = "lecture/measured:1"
layers = [
  {{ name = "base", size_mb = 2.0, compression = 2.5 }},
  {{ name = "app", size_mb = 3.0, compression = 1.0 }},
]

[[step]]
command = "run"
image = "lecture/measured:1"
repeat = 2
"""


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """Temp files and the layer cache below tmp_path (nothing in ~/.cache or /tmp)."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return temp


def test_measure_rows(isolated, tmp_path):
    """Two replications of a cold `run` then a warm one: the rows name layers by the
    scenario's names, requests span their phases, downloads carry the blob's bytes
    and cannot beat the link, resolve costs at least 3 round trips (/v2/, manifest,
    config), the warm run pulls nothing, and nothing is left behind."""
    scenario = parse_scenario(SCENARIO, "SCENARIO")
    rows = measure(scenario)
    report = build_images(scenario, tmp_path / "expected", cache_dir=cache_dir())  # same bytes

    assert {(r.source, r.engine) for r in rows} == {("real", "launcher")}
    assert {r.replication for r in rows} == {0, 1}
    for replication in (0, 1):
        mine = [r for r in rows if r.replication == replication]
        assert {r.request for r in mine} == {"s0-c0-r0", "s0-c0-r1"}
        cold = {r.phase for r in mine if r.request == "s0-c0-r0"}
        warm = {r.phase for r in mine if r.request == "s0-c0-r1"}
        assert cold == {"request", "resolve", "download", "extract", "pull",
                        "create", "start", "run", "remove"}
        assert warm == {"request", "create", "start", "run", "remove"}
        downloads = [r for r in mine if r.phase == "download"]
        assert sorted(r.layer for r in downloads) == ["app", "base"]
        extracts = sorted((r for r in mine if r.phase == "extract"), key=lambda r: r.start_s)
        assert [r.layer for r in extracts] == ["base", "app"]  # bottom to top

    for (replication, request) in {(r.replication, r.request) for r in rows}:
        mine = [r for r in rows if (r.replication, r.request) == (replication, request)]
        (whole,) = [r for r in mine if r.phase == "request"]
        for row in mine:
            assert whole.start_s - ROUNDING_S <= row.start_s <= row.end_s <= whole.end_s + ROUNDING_S, row

    for row in rows:
        if row.phase == "download":
            assert row.bytes == report.layers[row.layer].compressed_bytes
            assert row.duration_s >= row.bytes * 8 / (BANDWIDTH_MBPS * 1e6) - ROUNDING_S, row
        elif row.phase == "resolve":
            assert row.duration_s >= 3 * RTT_S - ROUNDING_S, row
        elif row.phase == "extract":
            assert row.bytes == report.layers[row.layer].content_bytes

    assert list(isolated.glob("docksim-measure-*")) == []
    assert overlay_mounts_under(tmp_path) == []


def test_compare_writes_the_error_table(tmp_path):
    """`simulate.py compare scenarios/hello.toml`: comparison.csv has the documented
    columns, the three metrics of both requests, and error_pct = 100 (sim - meas) / meas."""
    out = tmp_path / "out"
    temp = tmp_path / "temp"
    temp.mkdir()
    env = dict(os.environ, TMPDIR=str(temp), XDG_CACHE_HOME=str(tmp_path / "cache"), MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, "simulate.py", "compare", "scenarios/hello.toml",
                           "--out", str(out), "--calibration", "builtin"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]

    with open(out / "comparison.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["step", "client", "repeat", "metric", "simulated_s",
                                     "measured_s", "error_pct"]
        rows = list(reader)
    assert sorted((r["step"], r["client"], r["repeat"], r["metric"]) for r in rows) == sorted(
        ("0", "0", repeat, metric) for repeat in ("0", "1") for metric in METRICS)
    for row in rows:
        simulated, measured = float(row["simulated_s"]), float(row["measured_s"])
        if measured == 0:
            assert row["error_pct"] == "", row  # a warm run pulls nothing: no relative error
            continue
        expected = 100 * (simulated - measured) / measured
        # the cell is rounded to 2 decimals, the seconds it came from to 6
        slack = 0.005 + 100 * 5e-7 * (1 / measured + abs(simulated) / measured ** 2) + 1e-9
        assert abs(float(row["error_pct"]) - expected) <= slack, row
    pulls = {r["repeat"]: float(r["measured_s"]) for r in rows if r["metric"] == "pull_s"}
    assert pulls["0"] > 0 and pulls["1"] == 0
    # per phase: the cold run has its layers' downloads; the warm run none
    with open(out / "comparison-phases.csv", newline="") as handle:
        phases = list(csv.DictReader(handle))
    cold = {(r["phase"], r["layer"]) for r in phases if r["repeat"] == "0"}
    warm = {r["phase"] for r in phases if r["repeat"] == "1"}
    assert {("resolve", ""), ("pull", ""), ("create", ""), ("start", "")} <= cold
    assert any(phase == "download" for phase, _ in cold) and "download" not in warm
    for row in phases:
        simulated, measured = float(row["simulated_s"]), float(row["measured_s"])
        if measured > 0:
            assert float(row["error_pct"]) == pytest.approx(100 * (simulated - measured) / measured,
                                                            abs=0.01)
    assert list(temp.glob("docksim-measure-*")) == []
    assert overlay_mounts_under(tmp_path) == []
