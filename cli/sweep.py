"""`sweep`: one scenario over a grid of `--set` values, with replications, on any executor."""
from __future__ import annotations

import sys
from pathlib import Path

from vocab.schema import ScenarioError


def sweep_costs(choice: str | None):
    """The costs every point simulates with: --calibration FILE, `builtin`, or by
    default this machine's saved launcher profile if there is one (a sweep never
    calibrates by itself: that would measure, as root)."""
    from model.costs import Costs
    from model.profile import profile_path, read_profile
    if choice == "builtin":
        return Costs(), "built-in costs"
    path = Path(choice) if choice else profile_path("launcher")
    if choice or path.exists():
        return read_profile(path).costs, f"profile {path}"
    return Costs(), "built-in costs"


def cmd_sweep(args, console) -> int:
    from sweep.executors import make_executor
    from sweep.grid import parse_grid
    from sweep.progress import ProgressBar
    from sweep.runner import failure_line, plan_sweep, run_sweep
    if not args.set:
        raise ScenarioError("--set: a sweep needs at least one --set KEY=V1,V2,...")
    # Everything is checked before anything runs: every point's scenario, the options.
    costs, costs_from = sweep_costs(args.calibration)
    plan = plan_sweep(args.scenario, parse_grid(args.set), args.replications, args.seed,
                      costs=costs)
    executor = make_executor(args.scheduler, args.workers)
    progress = ProgressBar(description=plan.base.name)
    try:
        report = run_sweep(plan, args.out, executor, progress)
    except KeyboardInterrupt:
        print(f"docksim: sweep interrupted; {args.out} keeps the finished points: "
              "run the same command again to resume", file=sys.stderr)
        return 130
    console.print(f"{report.points} points ({executor.name}, {costs_from}): "
                  f"{report.skipped} already done, "
                  f"{report.ran} run, {len(report.failed)} failed", soft_wrap=True)
    if not progress.enabled:  # with a bar, each failure was shown above it as it happened
        for record in report.failed:
            print(f"docksim: {failure_line(record)}", file=sys.stderr)
    console.print("wrote " + ", ".join(str(path) for path in report.files), soft_wrap=True)
    return 1 if report.failed else 0


def register(sub) -> None:
    p = sub.add_parser("sweep", help="simulate a scenario over a grid of --set values",
                       description="Simulate SCENARIO for every combination of the --set values, "
                       "each point with its replications; results go to DIR/results.csv. "
                       "Rerunning into the same DIR resumes: finished points are kept.")
    p.add_argument("scenario", type=Path, help="scenario file (TOML)")
    p.add_argument("--set", action="append", metavar="KEY=V1,V2,...",
                   help="a dotted scenario key and its values, e.g. network.bandwidth_mbps=10,100 "
                   "or step[0].clients=1,2,4 (several --set make a grid)")
    p.add_argument("--replications", type=int, help="per point (default: the scenario's)")
    p.add_argument("--seed", type=int, help="override [scenario] seed, from which every "
                   "point's seeds derive")
    p.add_argument("--out", type=Path, required=True, help="output directory (resumable)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT|local|serial",
                   help="a Dask scheduler, `local` for a Dask LocalCluster, `serial` for this "
                   "process; default: local worker processes")
    p.add_argument("--workers", type=int, help="local processes or LocalCluster workers "
                   "(default: every core)")
    p.add_argument("--calibration", metavar="FILE",
                   help="a profile from `calibrate`, or 'builtin' (default: this machine's "
                   "saved launcher profile if any, else the built-in costs)")
    p.set_defaults(func=cmd_sweep)
