"""Container costs sampled between a measurement's replications (harness/drift.py)."""
from __future__ import annotations

import dataclasses

import pytest

import model
from harness.calibrate import runs_scenario
from harness.drift import ContainerSampler, starts_containers
from harness.measure import measure, why_not_measurable
from model.costs import Costs
from vocab.scenario import parse_scenario

SAMPLED = ("api_call_s", "create_s", "start_s", "exit_s", "remove_s")
PROFILE = Costs(api_call_s=0.001, create_s=0.002, start_s=0.007, exit_s=0.0015, remove_s=0.003,
                extract_fixed_s=0.011, rmi_s=0.004)
NOW = PROFILE.with_(api_call_s=0.0013, create_s=0.0031, start_s=0.0095, exit_s=0.0021,
                    remove_s=0.0024)


def _scenario(command: str, replications: int = 3):
    return parse_scenario(f"""
[scenario]
name = "drift"
replications = {replications}

[[image]]
ref = "drift/a:1"
layers = [{{ name = "a", size_mb = 1.0 }}]

[[step]]
command = "{command}"
image = "drift/a:1"
""", "<drift>")


def test_only_scenarios_that_start_containers_are_sampled():
    assert starts_containers(_scenario("run"))
    assert not starts_containers(_scenario("pull"))


@pytest.mark.parametrize("samples", [1, 4])
def test_sampled_costs_are_the_container_costs_the_samples_were_played_with(samples):
    """Samples simulated with the machine's costs 'now' give those container costs
    back, whatever the profile said; every other cost stays the profile's."""
    sampler = ContainerSampler("launcher", replications=10)
    for _ in range(samples):
        sampler.rows += model.simulate(runs_scenario(replications=1), costs=NOW)
    got = sampler.costs(PROFILE)
    for field in dataclasses.fields(Costs):
        expected = NOW if field.name in SAMPLED else PROFILE
        assert getattr(got, field.name) == pytest.approx(getattr(expected, field.name), rel=1e-6), \
            field.name


def test_without_samples_the_profile_stands():
    assert ContainerSampler("docker", replications=3).costs(PROFILE) == PROFILE


@pytest.mark.parametrize("replications, per_replication", [(1, 6), (2, 3), (4, 2), (6, 1), (10, 1)])
def test_every_scenario_gets_at_least_six_samples(replications, per_replication):
    assert ContainerSampler("launcher", replications).per_replication == per_replication


@pytest.mark.skipif(why_not_measurable() is not None, reason="measures: root, Linux, overlayfs")
def test_a_sample_is_played_before_each_replication_on_the_same_engine():
    calls = []
    sampler = ContainerSampler("launcher", replications=3, progress=calls.append)
    rows = measure(_scenario("run", replications=3), between=sampler)
    assert calls == [f"sampling container costs before replication {k}" for k in (1, 2, 3)]
    assert sampler.samples == 6
    assert {row.replication for row in rows} == {0, 1, 2}
    # each sample: its own pull of the base image, six cached runs one after
    # another and six at once
    requests = {row.request for row in sampler.rows if row.phase == "request"}
    assert requests == {"s0-c0-r0", *(f"s1-c0-r{k}" for k in range(6)),
                        *(f"s2-c{k}-r0" for k in range(6))}
    assert sum(1 for row in sampler.rows if row.phase == "request") == 6 * 13
    assert {row.engine for row in sampler.rows} == {"launcher"}
    got = sampler.costs(PROFILE)
    assert 0 < got.create_s < 0.1 and 0 < got.start_s < 0.5 and got.rmi_s == PROFILE.rmi_s
    # six runs at once on two vCPUs are slower than one alone: some sharing shows
    assert 0.25 <= got.container_parallelism < 6
