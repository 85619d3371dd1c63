"""Running a scenario: one SimPy world per replication, rows out.

Each replication is a fresh world -- empty image stores (but for the images
cached at time 0), idle network -- so replications are independent samples of
the same experiment, as the real engine's are (it wipes its data root between
them).  Randomness (arrivals, image popularity, registry failures) comes from
``random.Random`` streams named per purpose and seeded from (seed,
replication), so one seed reproduces every row, replications draw
independently, and adding a new stream does not shift the draws of existing
ones.
"""
from __future__ import annotations

import gc
import random

import simpy

from model.costs import Costs
from model.workload import start_clients
from model.world import World
from vocab.scenario import Scenario
from vocab.trace import PhaseRow, sort_rows


def stream(seed: int, replication: int, purpose: str) -> random.Random:
    """An independent, reproducible random stream (string seeds hash with SHA-512)."""
    return random.Random(f"docksim/{seed}/{replication}/{purpose}")


def simulate_replication(scenario: Scenario, replication: int, seed: int,
                         costs: Costs, world_out: list | None = None) -> list[PhaseRow]:
    """One replication from empty caches; rows in the order phases ended.

    ``world_out``, when given, receives the World (for tests and benchmarks).
    """
    env = simpy.Environment()
    rows: list[PhaseRow] = []

    def named(purpose: str) -> random.Random:
        return stream(seed, replication, purpose)
    world = World(env, scenario, costs, named)
    start_clients(env, world, scenario, costs, replication, rows, named)
    # Python's cyclic collector would walk every live object of a big world over
    # and over (the cost grows faster than the world); the run makes little
    # cyclic garbage, so the collector waits until the replication is over.
    collecting = gc.isenabled()
    gc.disable()
    try:
        env.run()
    finally:
        if collecting:
            gc.enable()
    if world_out is not None:
        world_out.append(world)
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
