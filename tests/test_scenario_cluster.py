"""The scenario's cluster tables: defaults, meaning, and one-line errors naming the key."""
from __future__ import annotations

from pathlib import Path

import pytest

from vocab.cluster import Distribution, NodeGroup, Registry
from vocab.scenario import load_scenario, parse_scenario
from vocab.schema import ScenarioError

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

BASE = """
[scenario]
name = "c"

[[image]]
ref = "a:1"
layers = [{ name = "l", size_mb = 1 }]

[[image]]
ref = "b:1"
layers = [{ name = "m", size_mb = 1 }]
"""
STEP = '\n[[step]]\ncommand = "pull"\nimage = "a:1"\n'


def parse(extra: str, step: str = STEP):
    return parse_scenario(BASE + extra + step, "c.toml")


def test_a_file_without_cluster_tables_is_the_one_node_world():
    s = parse("")
    assert s.nodes == (NodeGroup("node"),) and s.node_names() == ["node"]
    assert s.registry == Registry() and s.distribution == Distribution()
    net = s.network
    assert (net.topology, net.registry_bandwidth_mbps, net.public_ips, net.slow_start) == \
        ("star", None, None, False)
    assert (s.daemon.max_download_attempts, s.daemon.extract, s.daemon.cores) == (5, "serial", None)
    step = s.steps[0]
    assert step.nodes == ("node",) and step.arrivals == "fixed" and step.choices == ("a:1",)


@pytest.mark.parametrize("name", ["hello", "three-clients", "shared-base", "slow-link"])
def test_the_first_scenarios_load_unchanged(name):
    s = load_scenario(SCENARIOS / f"{name}.toml")
    assert s.node_names() == ["node"] and s.distribution.mode == "registry"


@pytest.mark.parametrize("name", ["fanout-central-vs-p2p", "bandwidth-regimes",
                                  "cache-pressure", "rate-limited"])
def test_the_cluster_scenarios_load_with_a_one_line_description(name):
    s = load_scenario(SCENARIOS / f"{name}.toml")
    assert s.description and "\n" not in s.description
    assert len(s.node_names()) > 1


def test_node_groups_expand_and_steps_match_globs():
    s = parse('[[node]]\nname = "worker"\ncount = 3\nbandwidth_mbps = 1000\ncache_mb = 500\n'
              'cached = ["b:1"]\n[[node]]\nname = "edge"\n',
              '\n[[step]]\nnode = "worker-*"\ncommand = "pull"\nimages = ["*:1"]\n'
              'popularity = "zipf"\nzipf_s = 1.2\n')
    assert s.node_names() == ["worker-0", "worker-1", "worker-2", "edge"]
    worker = s.nodes[0]
    assert (worker.bandwidth_mbps, worker.cache_mb, worker.cached) == (1000.0, 500.0, ("b:1",))
    step = s.steps[0]
    assert step.nodes == ("worker-0", "worker-1", "worker-2")
    assert step.images == ("a:1", "b:1") and step.image == "a:1" and step.zipf_s == 1.2


def test_registry_and_distribution_tables():
    s = parse('[registry]\nworkers = 64\nrequest_ms = 2.0\nauth = "token"\n'
              'rate_limit = { pulls = 100, window_s = 21600 }\nerror_rate = 0.01\n'
              '[distribution]\nmode = "p2p"\npeer_upload_mbps = 1000\npiece_mb = 4\n'
              '[network]\ntopology = "racks"\nrack_size = 40\nrack_uplink_mbps = 10000\n'
              'registry_bandwidth_mbps = 10000\n[daemon]\nextract = "parallel"\ncores = 2\n')
    assert s.registry.rate_limit.pulls == 100 and s.registry.rate_limit.window_s == 21600.0
    assert s.registry.auth == "token" and s.distribution.mode == "p2p"
    assert s.network.topology == "racks" and s.daemon.cores == 2


def test_poisson_steps():
    s = parse("", '\n[[step]]\ncommand = "run"\nimage = "a:1"\narrivals = "poisson"\n'
                  'rate_per_s = 0.5\nduration_s = 60\n')
    assert (s.steps[0].rate_per_s, s.steps[0].duration_s) == (0.5, 60.0)


@pytest.mark.parametrize("extra, step, expected", [
    ('[network]\ntopology = "ring"\n', STEP, "network.topology: unknown value 'ring'"),
    ('[network]\nregistry_bandwidth_mbps = 0\n', STEP, "network.registry_bandwidth_mbps: must be greater than 0"),
    ('[network]\nrack_size = 0\n', STEP, "network.rack_size: must be at least 1"),
    ('[network]\nslow_start = 1\n', STEP, "network.slow_start: must be true or false"),
    ('[[node]]\nname = "Worker"\n', STEP, "node[0].name: 'Worker' must be lowercase"),
    ('[[node]]\nname = "w"\ncount = 0\n', STEP, "node[0].count: must be at least 1"),
    ('[[node]]\nname = "w"\nbandwidth_mbps = -1\n', STEP, "node[0].bandwidth_mbps: must be greater than 0"),
    ('[[node]]\nname = "w"\ncache_mb = "big"\n', STEP, "node[0].cache_mb: must be a number"),
    ('[[node]]\nname = "w"\ncached = ["z:9"]\n', STEP, "node[0].cached[0]: unknown image 'z:9'"),
    ('[[node]]\nname = "w"\ncolour = 1\n', STEP, "node[0].colour: unknown key"),
    ('[[node]]\nname = "w"\ncount = 2\n[[node]]\nname = "w-1"\n', STEP,
     "node[1].name: node name 'w-1' is used twice"),
    ('[registry]\nworkers = 0\n', STEP, "registry.workers: must be at least 1"),
    ('[registry]\nauth = "basic"\n', STEP, "registry.auth: unknown value 'basic'"),
    ('[registry]\nerror_rate = 1.5\n', STEP, "registry.error_rate: must be at least 0 and below 1"),
    ('[registry]\nrate_limit = { pulls = 10 }\n', STEP, "registry.rate_limit.window_s: missing required key"),
    ('[registry]\nrate_limit = { pulls = 0, window_s = 60 }\n', STEP,
     "registry.rate_limit.pulls: must be at least 1"),
    ('[distribution]\nmode = "torrent"\n', STEP, "distribution.mode: unknown value 'torrent'"),
    ('[distribution]\npiece_mb = 0\n', STEP, "distribution.piece_mb: must be greater than 0"),
    ('[daemon]\nextract = "fast"\n', STEP, "daemon.extract: unknown value 'fast'"),
    ('[daemon]\ncores = 0\n', STEP, "daemon.cores: must be at least 1"),
    ('[catalog]\nimages = 0\n', STEP, "catalog.images: must be at least 1"),
    ('[catalog]\nimages = 3\nprefix = "Hub"\n', STEP, "catalog.prefix: 'Hub' must be lowercase"),
    ('[catalog]\nsize = 3\n', STEP, "catalog.size: unknown key"),
    ('[catalog]\nseed = 3\n', STEP, "catalog.images: missing required key"),
    ("", '\n[[step]]\nnode = "gpu-*"\ncommand = "pull"\nimage = "a:1"\n',
     "step[0].node: no node matches 'gpu-*'"),
    ("", '\n[[step]]\ncommand = "pull"\nimages = ["x*"]\n', "step[0].images[0]: unknown image 'x*'"),
    ("", '\n[[step]]\ncommand = "pull"\nimages = []\n', "step[0].images: needs at least one entry"),
    ("", '\n[[step]]\ncommand = "pull"\nimage = "a:1"\nimages = ["a:1"]\n',
     "step[0].images: give image or images, not both"),
    ("", '\n[[step]]\ncommand = "pull"\n', "step[0].image: missing required key"),
    ("", '\n[[step]]\ncommand = "pull"\nimage = "a:1"\narrivals = "poisson"\nrate_per_s = 1\n',
     "step[0].duration_s: missing"),
    ("", '\n[[step]]\ncommand = "pull"\nimage = "a:1"\narrivals = "poisson"\nrate_per_s = 1\n'
         'duration_s = 5\nrepeat = 2\n', "step[0].repeat: not with arrivals"),
    ("", '\n[[step]]\ncommand = "pull"\nimage = "a:1"\nrate_per_s = 1\n',
     "step[0].rate_per_s: only with arrivals"),
    ("", '\n[[step]]\ncommand = "pull"\nimage = "a:1"\npopularity = "zipf"\n',
     "step[0].popularity: only with images"),
    ("", '\n[[step]]\ncommand = "pull"\nimages = ["a:1"]\nzipf_s = 2\n',
     "step[0].zipf_s: only with popularity"),
    ("", '\n[[step]]\ncommand = "pull"\nimage = "a:1"\narrivals = "burst"\n',
     "step[0].arrivals: unknown value 'burst'"),
    ("", '\n[[step]]\ncommand = "pull"\nimage = "a:1"\nretries = -1\n',
     "step[0].retries: must not be negative"),
])
def test_errors_are_one_line_naming_file_and_key(extra, step, expected):
    with pytest.raises(ScenarioError) as err:
        parse(extra, step)
    message = str(err.value)
    assert message.startswith(f"c.toml: {expected}"), message
    assert "\n" not in message


def test_a_catalog_alone_provides_the_images():
    s = parse_scenario('[scenario]\nname = "c"\nseed = 4\n[catalog]\nimages = 12\nprefix = "hub"\n'
                       '[[step]]\ncommand = "pull"\nimages = ["hub/*"]\n', "c.toml")
    assert len(s.images) == 12 and s.steps[0].images[0] == "hub/app-0:1"
    with pytest.raises(ScenarioError, match=r"c.toml: image: needs at least one entry"):
        parse_scenario('[scenario]\nname = "c"\n[[step]]\ncommand = "pull"\nimage = "a:1"\n', "c.toml")
