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
from harness.calibrate import (calibration_scenarios, container_costs, derive_costs,
                               extraction_line, runs_scenario)
from harness.calibrate_ingest import (HIGHEST_S, calibrate_manifest_wait, fit_manifest_wait,
                                      pairs_scenario)
from harness.calibrate_sharing import HIGHEST, LOWEST, fit_parallelism
from harness.calibrate_tcp import (bulk_scenario, derive_kernel_link, derive_bulk_extra,
                                   derive_tcp_setup, ramp_scenario, tcp_scenario)
from harness.measure import why_not_measurable
from harness.netns import why_unavailable
from model.costs import Costs
from model.tcp import kernel_link_model
from model.profile import new_profile, read_profile, write_profile
from vocab.schema import ScenarioError

PROJECT = Path(__file__).resolve().parent.parent
TRUTH = Costs(api_call_s=0.0011, registry_request_s=0.0021, unlimited_link_Bps=9e8,
              extract_random_Bps=2.5e8, extract_compressible_Bps=6e8, extract_fixed_s=0.004,
              pull_fixed_s=0.0009, create_s=0.0015, start_s=0.006, start_answer_s=0.0024,
              exit_s=0.002, remove_s=0.0025, rmi_s=0.003, userland_extract_s=0.012)


# When the exit outlasts the calls after the exec, the start's answer work is
# hidden under the wait: the trace cannot show it, and calibration reads 0.
@pytest.mark.parametrize("truth", [TRUTH, TRUTH.with_(exit_s=0.02, start_answer_s=0.0)],
                         ids=["exit hidden by the calls", "exit longer than three calls"])
def test_derive_recovers_the_costs_the_model_was_given(truth):
    """Simulating the calibration workload with known costs and reading the costs
    back off that trace must give the same costs: calibration inverts the model."""
    pulls, runs = calibration_scenarios()
    got = derive_costs(model.simulate(pulls, costs=truth), model.simulate(runs, costs=truth),
                       "launcher", pulls.layer_bytes())
    for field in dataclasses.fields(Costs):
        assert getattr(got, field.name) == pytest.approx(getattr(truth, field.name), rel=1e-6), field.name


def test_container_costs_of_an_engine_timed_around_its_calls():
    """dockerd's create, start and remove are timed around the client's calls, and
    its `run` from the start's answer to the wait's (its exit outlasts the three
    calls between them): the model's trace of cached runs with those timings gives
    back the call and the container costs it was given."""
    truth = TRUTH.with_(phases_include_call=1.0, exit_s=0.02, start_answer_s=0.0)
    got = container_costs(model.simulate(runs_scenario(replications=2), costs=truth), "docker")
    for name, value in got.items():
        assert value == pytest.approx(getattr(truth, name), rel=1e-6), name


@pytest.mark.parametrize("parallelism", [0.8, 1.0, 1.7, 3.0])
def test_fit_parallelism_recovers_the_sharing_the_model_was_given(parallelism):
    """Six runs at once, simulated with a known parallelism: the fit reads it back."""
    rows = model.simulate(runs_scenario(replications=2),
                          costs=TRUTH.with_(container_parallelism=parallelism))
    assert fit_parallelism(rows, TRUTH) == pytest.approx(parallelism, rel=1e-3)


def test_fit_parallelism_stays_within_its_bounds():
    # six runs at once cannot show more parallelism than six: the upper bound
    unshared = model.simulate(runs_scenario(replications=1),
                              costs=TRUTH.with_(container_parallelism=10.0))
    assert fit_parallelism(unshared, TRUTH) == HIGHEST
    # slower than a quarter of one operation at a time: the lower bound
    crawling = model.simulate(runs_scenario(replications=1),
                              costs=TRUTH.with_(container_parallelism=0.1))
    assert fit_parallelism(crawling, TRUTH) == LOWEST


def test_extraction_line_is_the_least_squares_fit_through_every_size():
    # on a line: 10 ms per layer plus 2 ms per MB (500 MB/s)
    assert extraction_line([(1e6, 0.012), (3e6, 0.016), (5e6, 0.020)]) == pytest.approx((0.010, 5e8))
    # residuals of +1, -2 and +1 ms (they sum to 0 and do not tilt it) leave the same line
    assert extraction_line([(1e6, 0.013), (3e6, 0.014), (5e6, 0.021)]) == pytest.approx((0.010, 5e8))
    # a line through the origin's far side: the fixed cost cannot be negative
    fixed_s, rate_Bps = extraction_line([(2e6, 0.001), (4e6, 0.005)])
    assert (fixed_s, rate_Bps) == (0.0, pytest.approx(5e8))


@pytest.mark.parametrize("resolve_rtts, blob_rtts", [(1.0, 0.0), (3.0, 1.0), (0.5, 2.0)])
def test_derive_tcp_setup_recovers_the_round_trips_the_model_was_given(resolve_rtts, blob_rtts):
    """The kernel-network part inverts the model too: a trace simulated with known
    connection set-up gives those round trips back (to the 0.01 it rounds to)."""
    scenario, costs = kernel_link_model(tcp_scenario(), TRUTH.with_(
        tcp_setup_rtts_resolve=resolve_rtts, tcp_setup_rtts_blob=blob_rtts))
    got = derive_tcp_setup(model.simulate(scenario, costs=costs), TRUTH)
    assert (got.tcp_setup_rtts_resolve, got.tcp_setup_rtts_blob) == pytest.approx(
        (resolve_rtts, blob_rtts), abs=0.006)
    assert got.with_(tcp_setup_rtts_resolve=TRUTH.tcp_setup_rtts_resolve,
                     tcp_setup_rtts_blob=TRUTH.tcp_setup_rtts_blob) == TRUTH


@pytest.mark.parametrize("rate_Bps", [1.5e8, 4e8, 2e9])
def test_derive_kernel_link_recovers_the_rate_the_model_was_given(rate_Bps):
    truth = TRUTH.with_(kernel_link_Bps=rate_Bps)
    scenario, costs = kernel_link_model(bulk_scenario(), truth)
    got = derive_kernel_link(model.simulate(scenario, costs=costs), TRUTH)
    assert got.kernel_link_Bps == pytest.approx(rate_Bps, rel=1e-3)
    assert got.with_(kernel_link_Bps=TRUTH.kernel_link_Bps) == TRUTH


@pytest.mark.parametrize("extra_rtts", [0.4, 1.2, 2.5])
def test_derive_bulk_extra_recovers_the_round_trips_the_model_was_given(extra_rtts):
    """The ramp layer's download, simulated with known extra round trips,
    gives that cost back (to the 0.01 it rounds to); nothing else changes."""
    truth = TRUTH.with_(tcp_setup_rtts_resolve=2.0, tcp_setup_rtts_blob=0.5)
    scenario, costs = kernel_link_model(ramp_scenario(), truth.with_(tcp_bulk_extra_rtts=extra_rtts))
    got = derive_bulk_extra(model.simulate(scenario, costs=costs), truth)
    assert got.tcp_bulk_extra_rtts == pytest.approx(extra_rtts, abs=0.006)
    assert got.with_(tcp_bulk_extra_rtts=0.0) == truth
    # a download that ends earlier than the model's without the cost reads as 0, not less
    scenario, costs = kernel_link_model(ramp_scenario(), truth)
    faster = dataclasses.replace(scenario, network=dataclasses.replace(scenario.network, bandwidth_mbps=25))
    assert derive_bulk_extra(model.simulate(faster, costs=costs), truth).tcp_bulk_extra_rtts == 0.0


def test_connection_setup_is_charged_on_real_tcp_only():
    """One resolve round trip of 40 ms for set-up, and none on the emulated link."""
    costs, plain_costs = (TRUTH.with_(tcp_setup_rtts_resolve=rtts) for rtts in (1.0, 0.0))
    emulated = model.simulate(tcp_scenario(), costs=costs)
    plain = model.simulate(tcp_scenario(), costs=plain_costs)
    kernel = model.simulate(*kernel_link_model(tcp_scenario(), costs)[:1], costs=costs)
    kernel_plain = model.simulate(*kernel_link_model(tcp_scenario(), plain_costs)[:1], costs=plain_costs)

    def resolve_s(rows):
        return [r.duration_s for r in rows if r.phase == "resolve"]
    assert resolve_s(emulated) == resolve_s(plain)
    assert [a - b for a, b in zip(resolve_s(kernel), resolve_s(kernel_plain))] == pytest.approx(
        [0.040] * len(resolve_s(kernel)))


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
@pytest.mark.parametrize("wait_s", [0.2, 0.7, 1.3])
def test_fit_manifest_wait_recovers_the_wait_the_model_was_given(wait_s):
    """Pairs of pulls of one image, simulated with a known wait: the fit reads it back."""
    rows = model.simulate(pairs_scenario(), costs=TRUTH.with_(manifest_lock_wait_s=wait_s))
    assert fit_manifest_wait(rows, TRUTH) == pytest.approx(wait_s, abs=1e-3)


def test_fit_manifest_wait_stays_within_its_bounds():
    unlocked = model.simulate(pairs_scenario(replications=1), costs=TRUTH)
    assert fit_manifest_wait(unlocked, TRUTH) == 0.0
    stuck = model.simulate(pairs_scenario(replications=1),
                           costs=TRUTH.with_(manifest_lock_wait_s=2 * HIGHEST_S))
    assert fit_manifest_wait(stuck, TRUTH) == HIGHEST_S


def test_paired_pulls_on_dockerd_wait_for_the_manifests_lock():
    """The real dockerd: the second of two pulls of one image retries a locked
    ingest ten times with back-offs of up to 1, 2, ... 512 ms (about 0.5 s, at
    most 1.02 s), and the first waits for those retries.  docksim's daemon waits
    for nothing."""
    if why_not_measurable("docker"):
        pytest.skip(why_not_measurable("docker"))
    wait_s = calibrate_manifest_wait(TRUTH, "docker").manifest_lock_wait_s
    assert 0.2 < wait_s < 1.3
    assert calibrate_manifest_wait(TRUTH, "launcher").manifest_lock_wait_s < 0.05


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
    if why_unavailable() is None:
        # a 3 MB layer over 20 Mbit/s and 60 ms left BBR's start-up 1.3 round trips
        # late on the reference machine; CUBIC or a shallower queue would differ
        assert 0.3 < costs.tcp_bulk_extra_rtts < 3.0
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "simulate.py", "run", "scenarios/hello.toml", "--out", str(out)],
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    meta = json.loads((out / "summary.json").read_text())["meta"]
    assert meta["costs"] == dataclasses.asdict(costs) and str(profile_file) in meta["costs_from"]
