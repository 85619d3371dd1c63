"""One point of a sweep, as a worker runs it: a picklable task in, a plain record out.

A task carries everything the point needs -- its validated scenario, its
overrides and the seed of each replication -- so a worker on another machine
needs docksim's code but neither the scenario file nor the parent's state.
Every replication runs ``simulate(scenario with replications=1, seed=...)``,
so each one is an independent world, seeded by the sweep's seed rule.

The record is JSON-ready (it is journalled as one line).  A point whose model
raises comes back as a failure record instead of an exception, so one bad
point cannot stop the others on any executor.
"""
from __future__ import annotations

import dataclasses
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from sweep.metrics import replication_metrics
from vocab.scenario import Scenario


@dataclass(frozen=True)
class Task:
    index: int                     # position in the grid: the order of results
    point_id: str
    point: dict[str, Any]
    scenario: Scenario
    seeds: tuple[int, ...]         # one per replication
    costs: Any = None              # model.Costs; None: the built-in costs
    simulate: Callable | None = None  # None: model.simulate; tests inject others


def _model_simulate():
    import model  # imported in the worker, where the model runs
    return model.simulate


def run_task(task: Task) -> dict:
    """Simulate every replication of one point; return its record (never raises)."""
    simulate = task.simulate or _model_simulate()
    one = dataclasses.replace(task.scenario, replications=1)
    started = time.perf_counter()
    record: dict[str, Any] = {"point": task.point_id, "index": task.index,
                              "params": task.point, "seeds": list(task.seeds)}
    try:
        record["metrics"] = [replication_metrics(simulate(one, seed=seed, costs=task.costs))
                             for seed in task.seeds]
        record["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 -- any model error is this point's failure
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc(limit=-3)
    record["elapsed_s"] = round(time.perf_counter() - started, 6)
    return record


def run_batch(tasks: list[Task]) -> list[dict]:
    """Several points in one job: a pool's or Dask's cost per job is paid once for all."""
    return [run_task(task) for task in tasks]
