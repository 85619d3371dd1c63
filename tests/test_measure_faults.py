"""`simulate.py compare` on a faulty registry (scenarios/faulty-registry.toml):
the registry measured commits the faults the model draws (same seed, same
stream), so both sides show the retries -- a pull seconds longer than without
faults -- and agree on it.  Needs root (the engine measures)."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

from model import Costs, simulate
from tests.conftest import REPO_ROOT
from vocab.scenario import load_scenario
from vocab.trace import read_csv, request_metrics

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="measuring needs root")

SCENARIO = REPO_ROOT / "scenarios" / "faulty-registry.toml"


def test_compare_runs_on_a_faulty_registry_and_both_sides_retry(tmp_path):
    out = tmp_path / "cmp"
    result = subprocess.run([sys.executable, str(REPO_ROOT / "simulate.py"), "compare", str(SCENARIO),
                             "--out", str(out), "--calibration", "builtin",
                             "--set", "scenario.replications=1"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    sim, real = read_csv(out / "sim" / "trace.csv"), read_csv(out / "real" / "trace.csv")
    without = request_metrics(simulate(load_scenario(
        SCENARIO, overrides={"scenario.replications": 1, "registry.faults": {}}), costs=Costs()))
    clean_pull_s = next(iter(without.values()))["pull_s"]
    pulls = {}
    for side, rows in (("sim", sim), ("real", real)):
        (entry,) = request_metrics(rows).values()
        assert entry["startup_s"] is not None, f"{side}: the run did not start"
        pulls[side] = entry["pull_s"]
        # the faults of replication 0 (a 503, a 429, a stall past the read
        # timeout, a drip) cost seconds of back-off, Retry-After and timeout
        assert entry["pull_s"] > clean_pull_s + 2.0, (side, entry["pull_s"], clean_pull_s)
    print(f"pull without faults {clean_pull_s:.3f} s (model); with faults: "
          f"simulated {pulls['sim']:.3f} s, measured {pulls['real']:.3f} s")
    assert pulls["real"] == pytest.approx(pulls["sim"], rel=0.25)
    # the bytes on the wire: a resumed download sends each byte once on both sides
    wire = {side: sum(r.bytes for r in rows if r.phase == "download") for side, rows in
            (("sim", sim), ("real", real))}
    assert wire["real"] == pytest.approx(wire["sim"], abs=100)
    with open(out / "comparison.csv", newline="") as f:
        metrics = {row["metric"] for row in csv.DictReader(f)}
    assert {"pull_s", "startup_s", "total_s"} <= metrics
