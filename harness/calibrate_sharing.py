"""Calibration of how container operations share the machine.

The model runs create, start, an exit's reaping and remove as processor
sharing with a capacity of ``container_parallelism`` operations at full speed
(model/sharing.py).  That capacity is read off the last step of calibration's
cached-runs workload (harness/calibrate.py): on each fresh daemon, after a
pull and six runs one after another (dockerd's first run after a pull waits
for the pull's write-back, which the model has on its own,
model/pagecache.py), CONCURRENT_RUNS clients send `docker run` of `sleep 1`
at the same moment.

The capacity is the one with which the model, given every other cost, gives
the median start-up (request sent -> process exec'd) of those concurrent runs
that was measured: a bisection over the model's own prediction of the same
workload, as harness/calibrate_tcp.py does for connection set-up.
"""
from __future__ import annotations

import statistics

from harness.calibrate import CONCURRENT_REQUEST, runs_scenario, solve_monotone
from model.costs import Costs
from vocab.trace import PhaseRow, request_metrics

# Bounds of the fit: below a quarter, one run alone would already be slowed by
# nothing; above this, no machine here shares anything.
LOWEST, HIGHEST = 0.25, 64.0


def median_concurrent_startup_s(rows: list[PhaseRow]) -> float:
    """The median start-up of the concurrent runs, over clients and replications."""
    values = [entry["startup_s"] for (_, request), entry in request_metrics(rows).items()
              if request.startswith(CONCURRENT_REQUEST) and entry["startup_s"] is not None]
    if not values:
        raise ValueError("calibration: no concurrent run started a container")
    return statistics.median(values)


def fit_parallelism(real_rows: list[PhaseRow], costs: Costs) -> float:
    """The container_parallelism with which the model's median start-up of the
    concurrent runs equals the measured one (clamped to [LOWEST, HIGHEST])."""
    import model  # harness -> model only for this fit, as calibrate_tcp does
    measured_s = median_concurrent_startup_s(real_rows)
    scenario = runs_scenario(replications=1)  # the model is deterministic

    def modelled_s(parallelism: float) -> float:
        rows = model.simulate(scenario, costs=costs.with_(container_parallelism=parallelism))
        return median_concurrent_startup_s(rows)

    # more parallelism never makes the model slower
    return solve_monotone(modelled_s, measured_s, LOWEST, HIGHEST, increasing=False, log_scale=True)
