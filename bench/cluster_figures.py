"""The cluster scenarios' figures, from the model API: curves and tables for the lecture.

    .venv/bin/python bench/cluster_figures.py            # all four
    .venv/bin/python bench/cluster_figures.py fanout     # or one: fanout | regimes | cache | limit

Every number is the model's with its default costs (``model.Costs()``), so it
does not depend on the machine's calibration profile.  The fan-out sweep
varies the node count and the distribution mode of
``scenarios/fanout-central-vs-p2p.toml``; the others run their file as is.
"""
from __future__ import annotations

import dataclasses
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model import Costs, simulate  # noqa: E402
from model.simulation import simulate_replication  # noqa: E402
from vocab.scenario import Scenario, load_scenario  # noqa: E402
from vocab.trace import quantile, request_metrics  # noqa: E402

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def with_nodes(scenario: Scenario, count: int, mode: str) -> Scenario:
    """The fan-out world with another node count and distribution mode."""
    group = dataclasses.replace(scenario.nodes[0], count=count)
    names = tuple(group.names())
    steps = tuple(dataclasses.replace(step, nodes=names) for step in scenario.steps)
    return dataclasses.replace(scenario, nodes=(group,), steps=steps,
                               distribution=dataclasses.replace(scenario.distribution, mode=mode))


def fanout_time_s(scenario: Scenario, count: int, mode: str) -> float:
    """When the last node has the image (the slowest pull)."""
    rows = simulate(with_nodes(scenario, count, mode), costs=Costs())
    return max(r.end_s for r in rows if r.phase == "pull")


def fanout() -> None:
    scenario = load_scenario(SCENARIOS / "fanout-central-vs-p2p.toml")
    image_bytes = scenario.images[0].layers[0].compressed_bytes
    client_Bps = scenario.nodes[0].bandwidth_mbps * 1e6 / 8
    source_Bps = scenario.network.registry_bandwidth_mbps * 1e6 / 8
    print("fan-out of a 200 MB image: time until the last of N nodes has it (s)")
    print(f"{'N':>6}{'central':>10}{'closed form':>13}{'p2p':>8}")
    for count in (5, 10, 20, 50, 100, 200, 500, 1000):
        closed = max(image_bytes / client_Bps, count * image_bytes / source_Bps)
        print(f"{count:>6}{fanout_time_s(scenario, count, 'registry'):>10.1f}{closed:>13.1f}"
              f"{fanout_time_s(scenario, count, 'p2p'):>8.1f}")
    print("closed form (central): max(S / client rate, N x S / source rate), "
          "before resolve and extraction\n")


def regimes() -> None:
    scenario = load_scenario(SCENARIOS / "bandwidth-regimes.toml")
    costs = Costs()
    layers = scenario.images[0].layers
    wire_bytes = sum(layer.compressed_bytes for layer in layers)
    extract_s = sum(costs.extract_s(layer.size_bytes, layer.compression) for layer in layers)
    rows = simulate(scenario, costs=costs)
    print("one 10-layer image (100 MB on the wire, 300 MB extracted) by link speed")
    print(f"{'node':<10}{'pull s':>9}{'wire s':>9}{'extract s':>11}  bound")
    for row in (r for r in rows if r.phase == "pull"):
        group = next(g for g in scenario.nodes if g.name == row.node)
        wire_s = wire_bytes * 8 / (group.bandwidth_mbps * 1e6)
        bound = "network" if wire_s > extract_s else "extraction"
        print(f"{row.node:<10}{row.end_s - row.start_s:>9.3f}{wire_s:>9.3f}{extract_s:>11.3f}  {bound}")
    print()


def cache() -> None:
    scenario = load_scenario(SCENARIOS / "cache-pressure.toml")
    worlds: list = []
    rows = simulate_replication(scenario, 0, scenario.seed, Costs(), worlds)
    metrics = request_metrics(rows)
    node_of = {r.request: r.node for r in rows}
    print("Zipf workload over the catalog, by cache size")
    print(f"{'nodes':<8}{'cache MB':>9}{'requests':>9}{'hit ratio':>10}{'start p50 s':>12}"
          f"{'start p95 s':>12}{'evictions':>10}")
    for group in scenario.nodes:
        names = set(group.names())
        mine = [m for (_, request), m in metrics.items() if node_of[request] in names]
        hits = sum(1 for m in mine if m["pull_s"] == 0)
        starts = [m["startup_s"] for m in mine if m["startup_s"] is not None]
        evictions = sum(worlds[0].daemons[n].store.evictions for n in names)
        cache_mb = "none" if group.cache_mb is None else f"{group.cache_mb:.0f}"
        print(f"{group.name:<8}{cache_mb:>9}{len(mine):>9}{hits / len(mine):>10.2f}"
              f"{statistics.median(starts):>12.3f}{quantile(starts, 0.95):>12.3f}{evictions:>10}")
    print()


def limit() -> None:
    scenario = load_scenario(SCENARIOS / "rate-limited.toml")
    worlds: list = []
    rows = simulate_replication(scenario, 0, scenario.seed, Costs(), worlds)
    counts = worlds[0].registry.counts
    started = len({r.request for r in rows if r.phase == "start"})
    limit_ = scenario.registry.rate_limit
    nodes = len(scenario.node_names())
    print(f"{nodes} nodes behind one address, {limit_.pulls} pulls per {limit_.window_s:.0f} s")
    print(f"containers started: {started} (closed form {min(nodes, limit_.pulls)})")
    retries = scenario.steps[0].retries
    print(f"429 answers: {counts['429']} (closed form "
          f"{(nodes - limit_.pulls) * (retries + 1)} = refused nodes x (1 + {retries} retries))")
    print(f"registry requests: {counts['requests']}\n")


FIGURES = {"fanout": fanout, "regimes": regimes, "cache": cache, "limit": limit}

if __name__ == "__main__":
    for name in sys.argv[1:] or FIGURES:
        FIGURES[name]()
