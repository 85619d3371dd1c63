"""The grid of a sweep: its points, their names and their seeds.

A grid maps dotted scenario keys to the values to try, in the order given on
the command line; its points are the Cartesian product, the last key varying
fastest.  A point is a plain dict of overrides, so it travels to any worker.

Seed rule (documented for users in ``SEED_RULE``): replication ``r`` of a
point with overrides ``p`` of a scenario with seed ``s`` runs with

    seed = int(sha256("docksim-sweep/{s}/{P}/{r}")[:8 bytes], big-endian) >> 1

where ``P`` is ``p`` as JSON with sorted keys and no spaces.  The seed depends
only on what the point *is*, never on where or in which order it runs, so
every executor gives the same numbers, and resuming changes nothing.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

from vocab.overrides import format_value, parse_assignment
from vocab.scenario import Scenario, load_scenario
from vocab.schema import ScenarioError

Grid = dict[str, list[Any]]
Point = dict[str, Any]

SEED_RULE = ("seed of replication r of a point = first 8 bytes of "
             "sha256('docksim-sweep/{scenario seed}/{point}/{r}') as a big-endian integer, "
             "shifted right by 1 (0 <= seed < 2**63); {point} is the point's overrides as "
             "JSON with sorted keys and no spaces, {scenario seed} the seed after the point's "
             "overrides and --seed")


def parse_grid(assignments: list[str]) -> Grid:
    """``["a.b=1,2", "c=x"]`` -> {"a.b": [1, 2], "c": ["x"]}; a key twice is an error."""
    grid: Grid = {}
    for text in assignments:
        key, values = parse_assignment(text)
        if key in grid:
            raise ScenarioError(f"--set {key}: given twice; list every value in one --set "
                                f"{key}=V1,V2")
        grid[key] = values
    return grid


def single_overrides(assignments: list[str] | None) -> dict[str, Any]:
    """``--set`` for a command that runs one scenario: one value per key."""
    overrides = parse_grid(assignments or [])
    for key, values in overrides.items():
        if len(values) != 1:
            raise ScenarioError(f"--set {key}: this command takes one value; "
                                "`simulate.py sweep` tries several")
    return {key: values[0] for key, values in overrides.items()}


def grid_points(grid: Grid) -> list[Point]:
    """Every combination of the grid's values, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*grid.values())]


def canonical(point: Point) -> str:
    """The point as stable text: JSON with sorted keys, no spaces."""
    return json.dumps(point, sort_keys=True, separators=(",", ":"), default=str)


def point_id(point: Point) -> str:
    """A short name for the point that is the same in every run of the sweep."""
    return hashlib.sha256(canonical(point).encode()).hexdigest()[:16]


def point_seed(scenario_seed: int, point: Point, replication: int) -> int:
    """The seed of one replication of one point (see the module docstring)."""
    return point_seeds(scenario_seed, point, replication + 1)[replication]


def point_seeds(scenario_seed: int, point: Point, replications: int) -> tuple[int, ...]:
    """The seeds of replications 0 .. replications-1 of one point."""
    stem = f"docksim-sweep/{scenario_seed}/{canonical(point)}/"
    return tuple(int.from_bytes(hashlib.sha256(f"{stem}{r}".encode()).digest()[:8], "big") >> 1
                 for r in range(replications))


def describe(point: Point) -> str:
    """``network.bandwidth_mbps=10 step.clients=2``, as a user would type it."""
    return " ".join(f"{key}={format_value(value)}" for key, value in point.items()) or "(base)"


def scenarios_for(path: str | Path, points: list[Point], seed: int | None = None) -> list[Scenario]:
    """Every point's scenario, validated: the first bad point raises ScenarioError."""
    scenarios = []
    for point in points:
        scenario = load_scenario(path, overrides=point) if point else load_scenario(path)
        scenarios.append(scenario if seed is None else scenario.with_seed(seed))
    return scenarios
