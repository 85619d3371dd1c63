"""Planning and running a sweep: validate every point, run what is not done, write the tables.

``plan_sweep`` does all the checking before anything runs: every grid point's
scenario is loaded with its overrides, so a wrong key or value stops the sweep
with one line.  ``run_sweep`` then runs the points not yet in the output
directory's journal on an executor, journals each record as it arrives, and
always -- also after a Ctrl-C or an error -- rebuilds results.csv and
sweep.json from the journal, so the directory is consistent and a rerun of
the same command resumes where this one stopped.
"""
from __future__ import annotations

import dataclasses
import hashlib
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Protocol

from model.costs import Costs
from sweep import results
from sweep.grid import (SEED_RULE, Grid, Point, describe, grid_points, point_id, point_seeds,
                        scenarios_for)
from sweep.metrics import METRICS
from sweep.worker import Task
from vocab.scenario import Scenario
from vocab.schema import ScenarioError

# The fields of sweep.json that must match for a directory to be resumed.
IDENTITY = ("scenario_sha256", "keys", "replications", "seed", "costs")


class Progress(Protocol):
    def start(self, total: int, done: int) -> None: ...
    def advance(self, record: dict) -> None: ...
    def finish(self) -> None: ...


@dataclass
class SweepPlan:
    scenario_path: Path
    base: Scenario                 # the file as written (with --seed)
    grid: Grid
    points: list[Point]
    tasks: list[Task]
    replications: int | None       # --replications, or None: each point's scenario says
    seed: int | None               # --seed, or None
    text_sha256: str
    costs: Costs

    def identity(self) -> dict[str, Any]:
        return {"scenario_sha256": self.text_sha256, "keys": list(self.grid),
                "replications": self.replications, "seed": self.seed,
                "costs": dataclasses.asdict(self.costs)}


@dataclass
class SweepReport:
    points: int
    skipped: int                   # already in the directory
    ran: int
    failed: list[dict] = field(default_factory=list)
    interrupted: bool = False
    files: list[Path] = field(default_factory=list)


def plan_sweep(scenario_path: str | Path, grid: Grid, replications: int | None = None,
               seed: int | None = None, simulate: Callable | None = None,
               costs: Costs | None = None) -> SweepPlan:
    """Validate every point (ScenarioError on the first bad one) and make its task.

    ``costs`` default to the model's built-in ones; ``simulate`` to ``model.simulate``.
    """
    path = Path(scenario_path)
    costs = Costs() if costs is None else costs
    if replications is not None and replications < 1:
        raise ScenarioError(f"--replications: must be at least 1, not {replications}")
    if seed is not None and seed < 0:
        raise ScenarioError(f"--seed: must not be negative, not {seed}")
    base = scenarios_for(path, [{}], seed)[0]
    points = grid_points(grid)
    ids = [point_id(point) for point in points]
    if len(set(ids)) != len(points):
        raise ScenarioError("--set: a value appears twice in one key's list")
    scenarios = scenarios_for(path, points, seed)
    tasks = []
    for index, (point, scenario, pid) in enumerate(zip(points, scenarios, ids)):
        count = replications or scenario.replications
        seeds = point_seeds(scenario.seed, point, count)
        tasks.append(Task(index, pid, point, scenario, seeds, costs, simulate))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return SweepPlan(path, base, grid, points, tasks, replications, seed, sha, costs)


def _versions() -> dict[str, str | None]:
    from launcher import VERSION
    found: dict[str, str | None] = {"docksim": VERSION, "python": platform.python_version()}
    for package in ("simpy", "dask", "distributed", "tqdm", "pyarrow"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def _sidecar(plan: SweepPlan, status: dict) -> dict:
    counts = sorted({len(task.seeds) for task in plan.tasks})
    return {"scenario": {"file": str(plan.scenario_path), "name": plan.base.name,
                         "seed": plan.base.seed},
            "grid": plan.grid, "points": len(plan.points),
            # an integer, unless --set scenario.replications made them differ
            "replications": counts[0] if len(counts) == 1 else counts,
            "seed_rule": SEED_RULE, "metrics": list(METRICS),
            "columns": results.result_columns(plan.grid),
            "identity": plan.identity(), "versions": _versions(), "status": status}


def prepare_dir(plan: SweepPlan, out: Path) -> dict[str, dict]:
    """Check that ``out`` is new, empty, or this same sweep; return its journal."""
    if out.exists() and not out.is_dir():
        raise ScenarioError(f"--out: {out} exists and is not a directory")
    old = results.read_sidecar(out) if out.is_dir() else None
    if old is None:
        if out.is_dir() and any(out.iterdir()):
            raise ScenarioError(f"--out: {out} is not empty and holds no sweep; "
                                "choose a new directory")
        return {}
    mine = plan.identity()
    for name in IDENTITY:
        if old.get("identity", {}).get(name) != mine[name]:
            raise ScenarioError(f"--out: {out} holds another sweep ({name} differs); "
                                "choose a new directory to keep both")
    return results.read_journal(out)


def finalize(plan: SweepPlan, out: Path, interrupted: bool,
             journal: dict[str, dict] | None = None) -> SweepReport:
    """Rebuild the tables and the sidecar from the journal (read from ``out``
    unless given: the records in it, by point), for the plan's points."""
    journal = results.read_journal(out) if journal is None else journal
    records = [journal[t.point_id] for t in plan.tasks if t.point_id in journal]
    failed = [r for r in records if r.get("status") != "ok"]
    done = len(records) - len(failed)
    files = results.write_tables(out, list(plan.grid), records)
    status = {"complete": done == len(plan.tasks), "done": done, "interrupted": interrupted,
              "failed": [{"point": r["point"], "params": r["params"], "error": r.get("error", "")}
                         for r in failed]}
    results.write_sidecar(out, _sidecar(plan, status))
    return SweepReport(len(plan.tasks), 0, 0, failed, interrupted, files + [out / results.SIDECAR])


def run_sweep(plan: SweepPlan, out: str | Path, executor, progress: Progress | None = None
              ) -> SweepReport:
    """Run the plan's unfinished points on ``executor`` (a context manager, see
    ``sweep.executors``); a KeyboardInterrupt is re-raised after the directory
    is made consistent."""
    out = Path(out)
    journal = prepare_dir(plan, out)
    done = {pid for pid, record in journal.items() if record.get("status") == "ok"}
    todo = [task for task in plan.tasks if task.point_id not in done]
    ran, interrupted = 0, False
    with executor:  # started before the directory is touched: a bad --scheduler leaves none
        out.mkdir(parents=True, exist_ok=True)
        results.write_sidecar(out, _sidecar(plan, {"complete": False, "running": True}))
        if progress is not None:
            progress.start(len(plan.tasks), len(plan.tasks) - len(todo))
        try:
            with results.Journal(out) as log:
                for record in executor.run(todo):
                    log.append(record)
                    journal[record["point"]] = record  # as in the file, without reading it back
                    ran += 1
                    if progress is not None:
                        progress.advance(record)
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            if progress is not None:
                progress.finish()
            report = finalize(plan, out, interrupted, journal)
    report.skipped, report.ran = len(plan.tasks) - len(todo), ran
    return report


def failure_line(record: dict) -> str:
    """One line for a failed point: its parameters and the error."""
    return f"point {describe(record['params'])} failed: {record.get('error', 'unknown error')}"
