"""Calibration of how container operations share the machine.

The model runs create, start, an exit's reaping and remove as processor
sharing with a capacity of ``container_parallelism`` operations at full speed
(model/sharing.py).  That capacity is what this part of calibration measures,
with a workload of its own: a fresh daemon pulls a small image, runs it once
(dockerd's first run after a pull waits for the pull's write-back, which the
model has on its own, model/pagecache.py), and then CONCURRENT_RUNS clients
send `docker run` of `true` at the same moment.

The capacity is the one with which the model, given every other cost of the
profile, reproduces the median start-up (request sent -> process exec'd) of
those concurrent runs: a bisection over the model's own prediction of the same
workload, as harness/calibrate_tcp.py does for connection set-up.
"""
from __future__ import annotations

import math
import statistics

from harness.calibrate import BASE_LAYER
from harness.measure import measure
from model.costs import Costs
from vocab.scenario import Scenario, parse_scenario
from vocab.trace import PhaseRow, request_metrics

CONCURRENT_RUNS = 6
REPLICATIONS = 8
CONCURRENT_STEP = 2
# Bounds of the fit: below one operation at a time a single run would be slowed
# by nothing; above this, no machine here shares anything.
LOWEST, HIGHEST = 0.25, 64.0


def concurrent_runs_scenario(replications: int = REPLICATIONS) -> Scenario:
    """Pull, one warm-up run, then CONCURRENT_RUNS runs sent together."""
    text = (f'[scenario]\nname = "calibration-concurrent-runs"\n'
            f'description = "docksim\'s calibration: {CONCURRENT_RUNS} cached runs at once."\n'
            f"replications = {replications}\n"
            f'\n[[image]]\nref = "calibration/base:1"\nlayers = [{BASE_LAYER}]\n'
            '\n[[step]]\nat_s = 0\ncommand = "pull"\nimage = "calibration/base:1"\n'
            '\n[[step]]\nat_s = 0.5\ncommand = "run"\nimage = "calibration/base:1"\n'
            '\n[[step]]\nat_s = 1.0\ncommand = "run"\nimage = "calibration/base:1"\n'
            f"clients = {CONCURRENT_RUNS}\n")
    return parse_scenario(text, "<calibration-concurrent-runs>")


def median_concurrent_startup_s(rows: list[PhaseRow]) -> float:
    """The median start-up of the concurrent runs, over clients and replications."""
    prefix = f"s{CONCURRENT_STEP}-"
    values = [entry["startup_s"] for (_, request), entry in request_metrics(rows).items()
              if request.startswith(prefix) and entry["startup_s"] is not None]
    if not values:
        raise ValueError("calibration: no concurrent run started a container")
    return statistics.median(values)


def fit_parallelism(real_rows: list[PhaseRow], costs: Costs) -> float:
    """The container_parallelism with which the model's median start-up of the
    concurrent runs equals the measured one (clamped to [LOWEST, HIGHEST])."""
    import model  # harness -> model only for this fit, as calibrate_tcp does
    measured_s = median_concurrent_startup_s(real_rows)
    scenario = concurrent_runs_scenario(replications=1)  # the model is deterministic

    def modelled_s(parallelism: float) -> float:
        rows = model.simulate(scenario, costs=costs.with_(container_parallelism=parallelism))
        return median_concurrent_startup_s(rows)

    # more parallelism never makes the model slower: bisect on a log scale
    low, high = math.log(LOWEST), math.log(HIGHEST)
    if modelled_s(HIGHEST) >= measured_s:
        return HIGHEST
    if modelled_s(LOWEST) <= measured_s:
        return LOWEST
    for _ in range(40):
        middle = (low + high) / 2
        if modelled_s(math.exp(middle)) > measured_s:
            low = middle
        else:
            high = middle
    return round(math.exp((low + high) / 2), 4)


def calibrate_sharing(costs: Costs, engine: str, progress=lambda message: None) -> Costs:
    """`costs` with container_parallelism measured on `engine` (the other costs
    must already be this engine's: the fit uses them)."""
    rows = measure(concurrent_runs_scenario(), progress=progress, engine=engine)
    return costs.with_(container_parallelism=fit_parallelism(rows, costs))
