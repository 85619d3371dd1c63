"""The sweep chart: one line per hue value, 95 % confidence bands, the `chart` command."""
from __future__ import annotations

import math
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.collections import PolyCollection
from PIL import Image

from analysis.style import lecture_figure, lecture_style
from analysis.sweep_chart import BAND_TAG, mean_ci, metric_label, plot_sweep, t975

PROJECT = Path(__file__).resolve().parent.parent
HELLO = PROJECT / "scenarios" / "hello.toml"


def noisy_table(replications: int = 5) -> list[dict]:
    """A made-up sweep: time falls with bandwidth, grows with clients, with noise."""
    rng = random.Random(4)
    rows = []
    for bw in (10, 100, 1000):
        for clients in (1, 2, 4):
            point = f"p{bw}-{clients}"
            for r in range(replications):
                value = clients * 80 / bw + rng.gauss(0, 0.6 * clients)
                rows.append({"point": point, "network.bandwidth_mbps": bw, "step.clients": clients,
                             "replication": r, "seed": r, "metric": "total_s_median",
                             "value": value})
                rows.append({**rows[-1], "metric": "makespan_s", "value": 2 * value})
    return rows


def _lines(ax):
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)
            and c.get_label().startswith(BAND_TAG)]


def test_t_quantiles_and_intervals():
    assert t975(1) == 12.706 and t975(30) == 2.042
    assert t975(31) == pytest.approx(2.0395, abs=2e-4)
    assert t975(120) == pytest.approx(1.9799, abs=2e-4)
    values = [1.0, 2.0, 3.0, 4.0]
    mean, low, high = mean_ci(values)
    half = 3.182 * statistics.stdev(values) / 2
    assert (mean, low, high) == pytest.approx((2.5, 2.5 - half, 2.5 + half))
    assert mean_ci([7.0]) == (7.0, 7.0, 7.0)


def test_one_line_and_one_band_per_hue_value():
    rows = noisy_table()
    fig, ax = lecture_figure()
    with lecture_style():
        plot_sweep(ax, rows, "network.bandwidth_mbps", "total_s_median", hue="step.clients")
    lines, bands = _lines(ax), _bands(ax)
    assert [line.get_label() for line in lines] == ["1", "2", "4"]
    assert len(bands) == 3
    assert len({line.get_color() for line in lines}) == 3
    assert len({line.get_marker() for line in lines}) == 3
    # each line is the mean over replications; its band is the 95 % CI around it
    values = [r["value"] for r in rows if r["step.clients"] == 4 and r["network.bandwidth_mbps"] == 10
              and r["metric"] == "total_s_median"]
    mean, low, high = mean_ci(values)
    assert list(lines[2].get_xdata()) == [10, 100, 1000]
    assert lines[2].get_ydata()[0] == pytest.approx(mean)
    band_y = [y for x, y in bands[2].get_paths()[0].vertices if x == 10]
    assert min(band_y) == pytest.approx(low) and max(band_y) == pytest.approx(high)
    assert high - low > 0
    assert ax.get_xscale() == "log"  # 10 to 1000: two decades
    assert ax.get_ylabel() == "total_s, median over requests (s)"
    assert ax.get_legend().get_title().get_text().startswith("step.clients")


def test_text_values_are_categories_and_no_hue_draws_one_line():
    rows = [{"point": m, "distribution.mode": m, "replication": r, "seed": 0,
             "metric": "makespan_s", "value": v + r * 0.1}
            for m, v in (("registry", 3.0), ("p2p", 1.0)) for r in range(3)]
    fig, ax = lecture_figure()
    plot_sweep(ax, rows, "distribution.mode", "makespan_s")
    [line] = _lines(ax)
    assert list(line.get_xdata()) == [0, 1]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["registry", "p2p"]
    assert line.get_ydata() == pytest.approx([3.1, 1.1])
    assert len(_bands(ax)) == 1


def test_bad_requests_are_explained():
    rows = noisy_table()
    fig, ax = lecture_figure()
    with pytest.raises(ValueError, match="no metric 'pull_s_p95'"):
        plot_sweep(ax, rows, "network.bandwidth_mbps", "pull_s_p95")
    with pytest.raises(ValueError, match="step.clients also varies"):
        plot_sweep(ax, rows, "network.bandwidth_mbps", "makespan_s")
    with pytest.raises(ValueError, match="'node.count' is not a column"):
        plot_sweep(ax, rows, "node.count", "makespan_s")
    assert metric_label("makespan_s") == "makespan (s)"
    assert not math.isnan(t975(1000))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROJECT / "simulate.py"), *args],
                          capture_output=True, text=True, cwd=PROJECT, timeout=300)


def test_chart_command_draws_a_sweep(tmp_path):
    out = tmp_path / "sweep"
    result = cli("sweep", str(HELLO), "--set", "network.bandwidth_mbps=10,100,1000",
                 "--set", "step.repeat=1,3", "--set", "network.rtt_ms=0,20",
                 "--replications", "2", "--scheduler", "serial", "--out", str(out),
                 "--calibration", "builtin")
    assert result.returncode == 0, result.stderr
    png = tmp_path / "chart.png"
    result = cli("chart", str(out), "--kind", "sweep", "--x", "network.bandwidth_mbps",
                 "--y", "total_s_p95", "--hue", "step.repeat", "--where", "network.rtt_ms=20",
                 "--out", str(png))
    assert result.returncode == 0, result.stderr
    assert Image.open(png).size == (1600, 900) and png.with_suffix(".svg").exists()
    for args, message in (
            (("--x", "network.rtt_ms", "--y", "total_s_p95"), "network.bandwidth_mbps, step.repeat also varies"),
            (("--x", "nope", "--y", "total_s_p95"), "--x nope: not a swept key"),
            (("--x", "network.rtt_ms", "--y", "speed"), "--y speed: unknown metric"),
            (("--y", "total_s_p95",), "--kind sweep: needs --x")):
        bad = cli("chart", str(out), "--kind", "sweep", *args, "--out", str(tmp_path / "x.png"))
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    missing = cli("chart", str(tmp_path), "--kind", "sweep", "--x", "a", "--y", "b",
                  "--out", str(tmp_path / "x.png"))
    assert missing.returncode == 2 and "not a sweep directory" in missing.stderr
