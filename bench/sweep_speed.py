#!/usr/bin/env python3
"""How fast do sweeps run?  The bars: a 1,000-point sweep of a small scenario
is at least 1.8 x faster on 2 local worker processes than serially, and Dask adds
less than 20 ms per point.

    .venv/bin/python bench/sweep_speed.py [--points 1000] [--workers 2] [--replications 5] [--repeat 5]

The sweep: scenarios/three-clients.toml (one image of three layers, clients
starting at once) over bandwidth x clients x rtt, 10 values each (1,000 points),
5 replications per point.  Every run writes a full sweep directory (journal,
results.csv, sweep.json) in a temporary folder; times are wall clock, from the
plan (validating every point) to the last file written.  Then:

* serial: one process, no pool;
* processes: ``concurrent.futures.ProcessPoolExecutor`` with --workers processes;
* dask: a Dask LocalCluster of --workers worker processes (its start included);
* Dask's overhead per point, two ways: a LocalCluster of ONE worker against
  serial, divided by the points (cluster start included); and with trivial
  points (a model that returns no rows), so that almost all that is left is
  Dask's own per-task cost.

Each sweep runs --repeat times and the fastest run counts (other programs on
the machine only ever slow a run down).  First, a machine check: the same
pure-Python loop in 1 and in 2 processes, the ceiling of any speed-up here;
on a shared or busy machine it falls below 2 and so does every figure after.

Prints the numbers and exits 1 when a bar is missed.
"""
from __future__ import annotations

import argparse
import multiprocessing
import shutil
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from sweep.executors import DaskExecutor, ProcessExecutor, SerialExecutor  # noqa: E402
from sweep.runner import plan_sweep, run_sweep  # noqa: E402

SCENARIO = PROJECT / "scenarios" / "three-clients.toml"
SPEEDUP_BAR = 1.8
DASK_OVERHEAD_BAR_MS = 20.0


def _spin(_: int) -> int:
    total = 0
    for i in range(2_000_000):
        total += i * i
    return total


def machine_speedup(workers: int) -> float:
    """How much faster `workers` processes do 2 x `workers` equal CPU-bound jobs than one."""
    jobs = range(2 * workers)
    started = time.perf_counter()
    for job in jobs:
        _spin(job)
    one_s = time.perf_counter() - started
    with multiprocessing.get_context("forkserver").Pool(workers) as pool:
        pool.map(_spin, [0] * workers)  # start the workers before timing
        started = time.perf_counter()
        pool.map(_spin, jobs, chunksize=1)
        many_s = time.perf_counter() - started
    return one_s / many_s


def trivial_simulate(scenario, seed=None, costs=None):
    """A point that costs nothing: what remains is the executor's own work."""
    return []


def grid(points: int) -> dict[str, list]:
    side = max(1, round(points ** (1 / 3)))
    return {"network.bandwidth_mbps": [10 * (i + 1) for i in range(side)],
            "step.clients": list(range(1, side + 1)),
            "network.rtt_ms": [2 * i for i in range(side)]}


def timed(make_executor, points: int, replications: int, repeat: int, simulate=None) -> float:
    """Wall-clock seconds of one whole sweep into a fresh directory, best of `repeat`."""
    best = float("inf")
    for _ in range(repeat):
        out = Path(tempfile.mkdtemp(prefix="docksim-bench-"))
        try:
            started = time.perf_counter()
            plan = plan_sweep(SCENARIO, grid(points), replications, simulate=simulate)
            report = run_sweep(plan, out / "sweep", make_executor())
            best = min(best, time.perf_counter() - started)
            if report.failed or report.ran != len(plan.tasks):
                raise SystemExit(f"sweep_speed: the sweep did not finish: {report}")
        finally:
            shutil.rmtree(out, ignore_errors=True)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--replications", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; the fastest counts")
    args = parser.parse_args()
    n = len(plan_sweep(SCENARIO, grid(args.points), 1).tasks)
    w, r, k = args.workers, args.replications, args.repeat
    print(f"machine check: {w} processes run pure Python {machine_speedup(w):.2f} x faster "
          "than one (the ceiling of any speed-up below)")
    print(f"{n} points x {r} replications of {SCENARIO.name}, {w} workers, best of {k} runs")

    serial_s = timed(SerialExecutor, n, r, k)
    processes_s = timed(lambda: ProcessExecutor(w), n, r, k)
    dask_s = timed(lambda: DaskExecutor("local", w), n, r, k)
    dask_one_s = timed(lambda: DaskExecutor("local", 1), n, r, k)
    trivial_serial_s = timed(SerialExecutor, n, 1, k, trivial_simulate)
    trivial_dask_s = timed(lambda: DaskExecutor("local", 1), n, 1, k, trivial_simulate)

    speedup = serial_s / processes_s
    overhead_ms = (dask_one_s - serial_s) / n * 1000
    trivial_ms = (trivial_dask_s - trivial_serial_s) / n * 1000
    rows = [("serial", serial_s, ""),
            (f"processes ({args.workers})", processes_s, f"{speedup:.2f} x faster than serial"),
            (f"dask LocalCluster ({args.workers})", dask_s, f"{serial_s / dask_s:.2f} x faster than serial"),
            ("dask LocalCluster (1)", dask_one_s, f"{overhead_ms:+.2f} ms per point vs serial"),
            ("trivial points, serial", trivial_serial_s, ""),
            ("trivial points, dask (1)", trivial_dask_s, f"{trivial_ms:+.2f} ms per point vs serial")]
    for name, seconds, note in rows:
        print(f"  {name:28s} {seconds:8.2f} s  {seconds / n * 1000:7.2f} ms/point  {note}")
    worst_ms = max(overhead_ms, trivial_ms)
    ok = speedup >= SPEEDUP_BAR and worst_ms < DASK_OVERHEAD_BAR_MS
    print(f"speed-up on {args.workers} processes {speedup:.2f} x (bar >= {SPEEDUP_BAR}); "
          f"Dask overhead {worst_ms:.2f} ms per point (bar < {DASK_OVERHEAD_BAR_MS:.0f} ms): "
          f"{'pass' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
