"""Calibration: the arithmetic that reads costs off a trace, profiles on disk,
and one real calibration of docksim's engine."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import model
from harness.calibrate import calibration_scenario, derive_costs
from harness.measure import why_not_measurable
from model.costs import Costs
from model.profile import new_profile, read_profile, write_profile
from vocab.schema import ScenarioError

PROJECT = Path(__file__).resolve().parent.parent
TRUTH = Costs(api_call_s=0.0011, registry_request_s=0.0021, unlimited_link_Bps=9e8,
              extract_random_Bps=2.5e8, extract_compressible_Bps=6e8, extract_fixed_s=0.004,
              pull_fixed_s=0.0009, create_s=0.0015, start_s=0.006, exit_s=0.002,
              remove_s=0.0025, rmi_s=0.003)


def _sizes(scenario):
    return {name: layer.size_bytes for name, layer in scenario.layers().items()}


@pytest.mark.parametrize("truth", [TRUTH, dataclasses.replace(TRUTH, exit_s=0.02)],
                         ids=["exit hidden by the calls", "exit longer than three calls"])
def test_derive_recovers_the_costs_the_model_was_given(truth):
    """Simulating the calibration workload with known costs and reading the costs
    back off that trace must give the same costs: calibration inverts the model."""
    scenario = calibration_scenario()
    got = derive_costs(model.simulate(scenario, costs=truth), "launcher", _sizes(scenario))
    for field in dataclasses.fields(Costs):
        assert getattr(got, field.name) == pytest.approx(getattr(truth, field.name), rel=1e-6), field.name


def test_profiles_round_trip_and_refuse_nonsense(tmp_path):
    path = tmp_path / "p.toml"
    write_profile(new_profile("docker", TRUTH), path)
    text = path.read_text()
    assert "start_s = 0.006  # container start" in text
    profile = read_profile(path)
    assert profile.engine == "docker" and profile.costs == TRUTH
    path.write_text(text.replace("start_s = 0.006", "start_s = -1.0"))
    with pytest.raises(ScenarioError, match="start_s must be a finite number >= 0"):
        read_profile(path)
    path.write_text(text.replace("start_s = 0.006", "begin_s = 0.006"))
    with pytest.raises(ScenarioError, match=r"p.toml: costs.begin_s: unknown key"):
        read_profile(path)
    with pytest.raises(ScenarioError, match="no such calibration profile"):
        read_profile(tmp_path / "none.toml")


@pytest.mark.skipif(why_not_measurable() is not None, reason="calibrating measures: needs root")
def test_calibrate_then_run_uses_the_profile(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    done = subprocess.run([sys.executable, "simulate.py", "calibrate"], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (profile_file,) = (tmp_path / "config/docksim/calibration").glob("*-launcher.toml")
    costs = read_profile(profile_file).costs
    # plausible for any machine this runs on: the numbers are measured, not copied
    assert 0.0001 < costs.api_call_s < 0.05 and 0.0005 < costs.start_s < 0.2
    assert 20e6 < costs.extract_random_Bps < 20e9 and 50e6 < costs.unlimited_link_Bps < 100e9
    assert "MB/s" in done.stdout and "ms" in done.stdout
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "simulate.py", "run", "scenarios/hello.toml", "--out", str(out)],
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    meta = json.loads((out / "summary.json").read_text())["meta"]
    assert meta["costs"] == dataclasses.asdict(costs) and str(profile_file) in meta["costs_from"]
