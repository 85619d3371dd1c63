"""Running a scenario: one SimPy world per replication, rows out.

Each replication is a fresh node -- empty image store, idle link -- so
replications are independent samples of the same experiment, as the real
engine's are (it wipes its data root between them).  Randomness, when a cost
becomes stochastic, comes from ``random.Random`` streams named per purpose
and seeded from (seed, replication), so one seed reproduces every row and
adding a new stream does not shift the draws of existing ones.
"""
from __future__ import annotations

import random

import simpy

from model.client import Client, client_process
from model.costs import Costs
from model.daemon import Daemon
from model.link import Link
from vocab.scenario import Scenario
from vocab.trace import PhaseRow, sort_rows


def stream(seed: int, replication: int, purpose: str) -> random.Random:
    """An independent, reproducible random stream (string seeds hash with SHA-512)."""
    return random.Random(f"docksim/{seed}/{replication}/{purpose}")


def simulate_replication(scenario: Scenario, replication: int, seed: int,
                         costs: Costs) -> list[PhaseRow]:
    """One replication from empty caches; rows in the order phases ended."""
    env = simpy.Environment()
    rows: list[PhaseRow] = []
    link = Link(env, costs.link_Bps(scenario.network.bandwidth_mbps))
    daemon = Daemon(env, scenario, costs, link, rng=stream(seed, replication, "daemon"))
    for step_index, step in enumerate(scenario.steps):
        for client_index in range(step.clients):
            client = Client(env, daemon, costs)
            env.process(client_process(env, client, step, step_index, client_index,
                                       replication, rows))
    env.run()
    return rows


def simulate(scenario: Scenario, seed: int | None = None,
             costs: Costs | None = None) -> list[PhaseRow]:
    """Predict every phase of every request, for all of the scenario's replications.

    `seed` defaults to the scenario's; `costs` to ``Costs()``.  The rows come
    back in the trace's canonical order, so equal inputs give equal lists.
    """
    costs = Costs() if costs is None else costs
    seed = scenario.seed if seed is None else seed
    rows: list[PhaseRow] = []
    for replication in range(scenario.replications):
        rows.extend(simulate_replication(scenario, replication, seed, costs))
    return sort_rows(rows)
