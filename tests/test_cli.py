"""simulate.py as a user meets it: outputs of `run`, and one-line errors with exit 2."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vocab.trace import COLUMNS, read_csv

PROJECT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROJECT / "simulate.py"), *args],
                          capture_output=True, text=True, cwd=PROJECT, timeout=120)


def test_run_writes_trace_summary_and_timeline(tmp_path):
    result = cli("run", "scenarios/hello.toml", "--out", str(tmp_path), "--calibration", "builtin")
    assert result.returncode == 0, result.stderr
    assert "s0-c0-r1" in result.stdout
    text = (tmp_path / "trace.csv").read_text()
    assert text.splitlines()[0] == ",".join(COLUMNS)
    rows = read_csv(tmp_path / "trace.csv")
    assert {r.replication for r in rows} == {0, 1, 2}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["scenario"] == "hello" and summary["source"] == "sim"
    assert summary["engine"] == "model" and summary["replications"] == 3
    cold, warm = summary["requests"]
    assert (cold["step"], cold["client"], cold["repeat"]) == (0, 0, 0)
    # 20 MB random + 1.2 MB gz over 100 Mbit/s: at least 21.2e6*8/1e8 = 1.70 s on the wire
    assert 1.70 < cold["pull_s"] < cold["startup_s"] < cold["total_s"]
    assert warm["pull_s"] == 0 and 0 < warm["startup_s"] < warm["total_s"] < 0.2
    assert summary["meta"]["seed"] == 1
    for suffix in ("png", "svg"):
        assert (tmp_path / f"timeline.{suffix}").stat().st_size > 10_000


def test_same_seed_same_bytes(tmp_path):
    for name in ("a", "b"):
        assert cli("run", "scenarios/hello.toml", "--out", str(tmp_path / name), "--seed", "7",
                   "--calibration", "builtin").returncode == 0
    assert (tmp_path / "a/trace.csv").read_bytes() == (tmp_path / "b/trace.csv").read_bytes()
    assert (tmp_path / "a/timeline.svg").read_bytes() == (tmp_path / "b/timeline.svg").read_bytes()
    assert json.loads((tmp_path / "a/summary.json").read_text())["meta"]["seed"] == 7


@pytest.mark.parametrize("text, expected", [
    ("[scenario]\nname='x'\nbogus=1\n[[image]]\nref='a:1'\nlayers=[{name='l',size_mb=1}]\n"
     "[[step]]\ncommand='run'\nimage='a:1'\n", "scenario.bogus: unknown key"),
    ("[scenario]\nname='x'\n[[image]]\nref='a:1'\nlayers=[{name='l',size_mb=1}]\n"
     "[[step]]\ncommand='build'\nimage='a:1'\n", "step[0].command: unknown value 'build'"),
    ("[scenario]\nname='x'\n[[image]]\nref='a:1'\nlayers=[{name='l',size_mb=-1}]\n"
     "[[step]]\ncommand='run'\nimage='a:1'\n", "image[0].layers[0].size_mb: must be greater than 0"),
    ("not toml at all [", "not valid TOML"),
])
def test_bad_scenarios_get_one_line_and_exit_2(tmp_path, text, expected):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    for command in ("run", "measure", "compare"):
        result = cli(command, str(bad), "--out", str(tmp_path / "out"))
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(bad) in lines[0] and expected in lines[0], result.stderr
        assert not (tmp_path / "out").exists()


def test_missing_file_and_bad_seed(tmp_path):
    result = cli("run", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "no such scenario file" in result.stderr
    result = cli("run", "scenarios/hello.toml", "--out", str(tmp_path / "o"), "--seed", "-3")
    assert result.returncode == 2 and "--seed" in result.stderr


@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare is missing")
def test_without_root_measure_says_why_and_compare_writes_the_simulated_half(tmp_path):
    """In a fresh user namespace with no uid mapped, the process is not root (its
    euid is the overflow uid), as for a user without sudo."""
    def unprivileged(*args):
        return subprocess.run(["unshare", "--user", sys.executable, str(PROJECT / "simulate.py"), *args],
                              capture_output=True, text=True, cwd=PROJECT, timeout=120)
    result = unprivileged("measure", "scenarios/hello.toml", "--out", str(tmp_path / "m"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs root" in lines[0], result.stderr
    result = unprivileged("compare", "scenarios/hello.toml", "--out", str(tmp_path / "c"))
    assert result.returncode == 0, result.stderr
    assert "not measured" in result.stdout and "needs root" in result.stdout
    assert (tmp_path / "c/sim/trace.csv").exists() and not (tmp_path / "c/real").exists()
    assert not (tmp_path / "c/comparison.csv").exists()
    # a fresh calibration needs measuring too
    result = unprivileged("run", "scenarios/hello.toml", "--out", str(tmp_path / "r"),
                          "--calibration", "fresh")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "docksim: --calibration fresh: measure needs root: the engine mounts overlayfs and "
        "creates namespaces (run it as root, e.g. with sudo)"], result.stderr


def test_measure_refuses_what_the_engine_cannot_play_yet(tmp_path):
    """A cluster scenario is simulated, but measuring it is refused in one line."""
    result = cli("measure", "scenarios/rate-limited.toml", "--out", str(tmp_path / "m"),
                 "--calibration", "builtin")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot play more than one node" in lines[0]
    assert not (tmp_path / "m").exists()


def test_kernel_links_are_modelled_with_tcp_framing_and_slow_start(tmp_path):
    """`--network kernel` predicts a real TCP network: 1448 payload bytes per 1514-byte
    frame, so a transfer-bound pull takes at least 1514/1448 - 1 = 4.6 % longer."""
    for network in ("emulated", "kernel"):
        result = cli("run", "scenarios/hello.toml", "--out", str(tmp_path / network),
                     "--calibration", "builtin", "--network", network)
        assert result.returncode == 0, result.stderr
    emulated, kernel = (json.loads((tmp_path / n / "summary.json").read_text())
                        for n in ("emulated", "kernel"))
    assert kernel["meta"]["costs"]["link_goodput_ratio"] == pytest.approx(1448 / 1514)
    assert emulated["meta"]["costs"]["link_goodput_ratio"] == 1.0
    cold_emulated, cold_kernel = emulated["requests"][0]["pull_s"], kernel["requests"][0]["pull_s"]
    assert cold_kernel > cold_emulated * 1.04
