"""The scenario library: every file in scenarios/ loads and runs through the model
(one replication: fast mode), the lecture scenarios show what their comments
promise, and `simulate.py scenarios` lists them all."""
from __future__ import annotations

import dataclasses
import statistics
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

import model
from model import Costs
from vocab.scenario import load_scenario
from vocab.trace import request_metrics

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
FILES = sorted(SCENARIOS.rglob("*.toml"))
FAST = {"scenario.replications": 1}


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@lru_cache(maxsize=None)
def simulated(name: str, api_call_s: float | None = None):
    """(rows, per-request metrics) of scenarios/NAME.toml, one replication, built-in costs."""
    costs = Costs() if api_call_s is None else dataclasses.replace(Costs(), api_call_s=api_call_s)
    rows = model.simulate(load_scenario(SCENARIOS / f"{name}.toml", overrides=FAST), costs=costs)
    metrics = {request: entry for (_, request), entry in request_metrics(rows).items()}
    return rows, metrics


def downloaded(rows, request: str) -> int:
    return sum(r.bytes or 0 for r in rows if r.request == request and r.phase == "download")


def test_the_library_has_the_lecture_topics():
    names = {relative(p) for p in FILES}
    for topic in ("image-vs-container", "many-containers", "registry-hub", "registry-private",
                  "registry-mirror", "remote-daemon", "layer-sharing", "network-to-cpu",
                  "thundering-herd", "p2p-small", "cache-eviction", "rate-limited",
                  "fanout-central-vs-p2p", "cache-pressure", "faulty-registry"):
        assert f"scenarios/{topic}.toml" in names


@pytest.mark.parametrize("path", FILES, ids=relative)
def test_every_scenario_loads_and_runs(path):
    scenario = load_scenario(path, overrides=FAST)
    assert scenario.description.strip(), "a library scenario needs a one-line description"
    assert "\n" not in scenario.description
    rows = model.simulate(scenario, costs=Costs())
    metrics = request_metrics(rows)
    assert metrics, "the scenario made no requests"
    for entry in metrics.values():
        assert entry["total_s"] is not None and entry["total_s"] > 0


def test_image_vs_container_only_the_pull_moves_bytes():
    rows, metrics = simulated("image-vs-container")
    pulling = [r for r, e in metrics.items() if e["pull_s"] and e["pull_s"] > 0]
    assert pulling == ["s0-c0-r0"]
    assert downloaded(rows, "s0-c0-r0") > 10_000_000
    runs = [r for r, e in metrics.items() if e["command"] == "run"]
    assert len(runs) == 3
    for request in runs:
        assert downloaded(rows, request) == 0
        assert metrics[request]["startup_s"] < 0.1  # create + start, no pull
    # three containers: each run has its own create and start
    assert sum(r.phase == "create" for r in rows) == 3


def test_many_containers_run_at_once_without_pulling():
    rows, metrics = simulated("many-containers")
    runs = {r: e for r, e in metrics.items() if e["command"] == "run"}
    assert len(runs) == 10
    assert all(e["pull_s"] == 0 for e in runs.values())
    assert all(downloaded(rows, r) == 0 for r in runs)
    spans = [(r.start_s, r.end_s) for r in rows if r.phase == "run" and r.request in runs]
    assert len(spans) == 10
    assert max(s for s, _ in spans) < min(e for _, e in spans)  # all ten alive at one moment


def test_a_private_registry_and_a_mirror_beat_the_far_rate_limited_hub():
    _, hub = simulated("registry-hub")
    _, private = simulated("registry-private")
    _, mirror = simulated("registry-mirror")
    # the Hub's limit: 10 pulls for 12 nodes behind one address, so two runs fail
    failed = [r for r, e in hub.items() if e["startup_s"] is None]
    assert len(failed) == 2
    assert all(e["startup_s"] is not None for e in private.values())
    assert all(e["startup_s"] is not None for e in mirror.values())  # the Hub saw one client
    hub_pull = statistics.median(e["pull_s"] for e in hub.values() if e["startup_s"] is not None)
    private_pull = statistics.median(e["pull_s"] for e in private.values())
    mirror_pull = statistics.median(e["pull_s"] for e in mirror.values())
    assert private_pull < mirror_pull < hub_pull
    assert hub_pull > 3 * private_pull


def test_a_remote_daemon_pays_the_api_round_trips():
    _, local = simulated("remote-daemon")
    _, remote = simulated("remote-daemon", api_call_s=0.0217)
    extra = 0.0217 - Costs().api_call_s
    runs = [r for r, e in local.items() if e["command"] == "run"]
    assert len(runs) == 5
    for request in runs:
        added = remote[request]["total_s"] - local[request]["total_s"]
        assert 5 * extra < added < 9 * extra  # about seven Engine API calls per `docker run`
    pull = next(r for r, e in local.items() if e["command"] == "pull")
    assert remote[pull]["pull_s"] == pytest.approx(local[pull]["pull_s"], rel=0.01)


def test_layer_sharing_downloads_each_layer_once():
    rows, metrics = simulated("layer-sharing")
    fetched = [r.layer for r in rows if r.phase == "download"]
    assert sorted(fetched) == ["api", "os", "python", "tools", "worker"]
    by_request = {request: {r.layer for r in rows if r.request == request and r.phase == "download"}
                  for request in metrics}
    assert by_request["s1-c0-r0"] == {"worker"}
    assert by_request["s2-c0-r0"] == {"tools"}
    assert metrics["s1-c0-r0"]["pull_s"] < metrics["s0-c0-r0"]["pull_s"] / 3


def test_network_to_cpu_moves_the_bottleneck():
    rows, _ = simulated("network-to-cpu")

    def spans(node):
        pull = next(r for r in rows if r.node == node and r.phase == "pull")
        last_byte = max(r.end_s for r in rows if r.node == node and r.phase == "download")
        return pull.start_s, last_byte, pull.end_s

    start, last_byte, end = spans("slow")
    assert last_byte - start > 0.95 * (end - start)       # network-bound: extraction keeps up
    start, last_byte, end = spans("fast")
    assert end - last_byte > 2 * (last_byte - start)      # CPU-bound: extraction after the bytes
    extract_core_s = sum(r.end_s - r.start_s for r in rows if r.node == "fast" and r.phase == "extract")
    assert extract_core_s > 3 * (last_byte - start)


def test_a_thundering_herd_is_slower_than_one_node():
    _, herd = simulated("thundering-herd")
    alone = request_metrics(model.simulate(load_scenario(
        SCENARIOS / "thundering-herd.toml", overrides={**FAST, "node.count": 1}), costs=Costs()))
    alone_pull = next(iter(alone.values()))["pull_s"]
    assert len(herd) == 40
    assert min(e["pull_s"] for e in herd.values()) > 10 * alone_pull


def test_p2p_beats_the_central_registry():
    _, p2p = simulated("p2p-small")
    central = request_metrics(model.simulate(load_scenario(
        SCENARIOS / "p2p-small.toml", overrides={**FAST, "distribution.mode": "registry"}),
        costs=Costs()))
    assert max(e["pull_s"] for e in p2p.values()) < 0.5 * min(e["pull_s"] for e in central.values())


def test_cache_eviction_pulls_the_least_recently_used_image_again():
    _, metrics = simulated("cache-eviction")
    pulled = [metrics[f"s{step}-c0-r0"]["pull_s"] > 0 for step in range(6)]
    #         a     b     a      c     b (evicted)  c
    assert pulled == [True, True, False, True, True, False]


def test_a_faulty_registry_slows_pulls_that_still_succeed():
    path = SCENARIOS / "faulty-registry.toml"
    rows = model.simulate(load_scenario(path), costs=Costs())
    clean = request_metrics(model.simulate(load_scenario(path, overrides={"registry.faults": {}}),
                                           costs=Costs()))
    plain_pull_s = next(iter(clean.values()))["pull_s"]
    metrics = request_metrics(rows)
    assert len(metrics) == 3  # one cold run per replication, each with its own faults
    for entry in metrics.values():
        assert entry["startup_s"] is not None  # retried, resumed, verified: it runs
        assert entry["pull_s"] > plain_pull_s + 1.0  # but a back-off or more later
    sizes = {layer.name: layer.compressed_bytes for layer in load_scenario(path).layers().values()}
    downloads = [r for r in rows if r.phase == "download"]
    # a flipped byte: that layer crossed the network twice
    assert any(r.bytes == 2 * sizes[r.layer] for r in downloads)
    assert all(r.bytes in (sizes[r.layer], 2 * sizes[r.layer]) for r in downloads)


def test_the_scenarios_command_lists_every_file_with_its_description():
    result = subprocess.run([sys.executable, str(ROOT / "simulate.py"), "scenarios"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(FILES)
    for path in FILES:
        description = load_scenario(path).description
        assert any(line.startswith(relative(path) + " ") and line.rstrip().endswith(description)
                   for line in lines), relative(path)


def test_a_broken_file_is_listed_with_its_error(tmp_path):
    (tmp_path / "good.toml").write_text((SCENARIOS / "hello.toml").read_text())
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "typo.toml").write_text(
        (SCENARIOS / "hello.toml").read_text().replace('command = "run"', 'command = "bulid"'))
    result = subprocess.run([sys.executable, str(ROOT / "simulate.py"), "scenarios", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("good.toml ") and "cold pull" in lines[0]
    assert lines[1].startswith("sub/typo.toml ") and "ERROR:" in lines[1] and "bulid" in lines[1]
    assert "Traceback" not in result.stderr
    missing = subprocess.run([sys.executable, str(ROOT / "simulate.py"), "scenarios",
                              str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
