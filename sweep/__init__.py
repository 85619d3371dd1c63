"""Parameter sweeps: one scenario, a grid of overrides, replications, any executor.

    from sweep import sweep
    report = sweep("scenarios/hello.toml", {"network.bandwidth_mbps": [10, 100, 1000]},
                   "out/bw", replications=5)

``grid`` is where each point's overrides come from (``sweep.grid``), ``worker``
runs one point, ``executors`` runs many (serially, on local processes or on
Dask), ``results`` keeps the directory and ``runner`` ties them together.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sweep.runner import SweepReport, plan_sweep, run_sweep


def sweep(scenario: str | Path, grid: dict[str, list[Any]], out: str | Path, *,
          replications: int | None = None, seed: int | None = None,
          scheduler: str | None = None, workers: int | None = None,
          progress: bool | None = None) -> SweepReport:
    """Run a sweep as ``simulate.py sweep`` does (scheduler None: local processes,
    "serial", "local" for a Dask LocalCluster, or tcp://HOST:PORT)."""
    from sweep.executors import make_executor
    from sweep.progress import ProgressBar
    plan = plan_sweep(scenario, {k: list(v) for k, v in grid.items()}, replications, seed)
    return run_sweep(plan, out, make_executor(scheduler, workers), ProgressBar(progress))


__all__ = ["SweepReport", "plan_sweep", "run_sweep", "sweep"]
