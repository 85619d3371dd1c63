"""`calibrate`, and the choice of costs that `run` and `compare` simulate with.

Costs come from, in order: `--calibration FILE` (or `fresh`: calibrate now and
save, so the costs describe the machine as it is this minute); the profile saved for this
machine and engine; a calibration made now and saved (when this machine can
measure); the built-in costs, measured once on the reference machine.
`--calibration builtin` asks for the built-in costs explicitly.
"""
from __future__ import annotations

import sys
from pathlib import Path

from model.costs import Costs
from vocab.schema import ScenarioError
from model.profile import EXPLAIN, new_profile, profile_path, read_profile, write_profile

BUILTIN = "builtin"
FRESH = "fresh"  # calibrate now (and save): the machine as it is this minute


def _unit(name: str, value: float) -> str:
    if name.endswith("_Bps"):
        return f"{value / 1e6:,.1f} MB/s"
    if name.endswith("_s"):
        return f"{value:.1f} s" if value >= 1 else f"{value * 1000:.2f} ms"
    return f"{value:g}"


def costs_table(costs: Costs, title: str):
    from rich.table import Table
    table = Table(title=title, title_justify="left")
    for column, justify in (("cost", "left"), ("value", "right"), ("what it is", "left")):
        table.add_column(column, justify=justify)
    for name, explanation in EXPLAIN.items():
        table.add_row(name, _unit(name, getattr(costs, name)), explanation)
    return table


def run_calibration(engine: str, console) -> tuple[Costs, Path]:
    """Measure now, save the profile, return the costs and where they went."""
    from harness.calibrate import calibrate
    with console.status(f"calibrating docksim's model against the {engine} engine") as status:
        costs = calibrate(engine, progress=lambda m: status.update(f"calibrating: {m}"))
    path = profile_path(engine)
    write_profile(new_profile(engine, costs), path)
    return costs, path


def resolve_costs(choice: str | None, engine: str, console) -> tuple[Costs, str]:
    """The costs to simulate with, and a few words saying where they came from."""
    if choice == BUILTIN:
        return Costs(), "built-in costs"
    if choice == FRESH:
        from harness.measure import why_not_measurable
        reason = why_not_measurable(engine)
        if reason:
            raise ScenarioError(f"--calibration fresh: {reason}")
        costs, path = run_calibration(engine, console)
        return costs, f"profile {path} (made now)"
    if choice:
        profile = read_profile(Path(choice))
        return profile.costs, f"profile {choice}"
    saved = profile_path(engine)
    if saved.exists():
        return read_profile(saved).costs, f"profile {saved}"
    from harness.measure import why_not_measurable
    if why_not_measurable(engine) is None:
        console.print(f"no calibration of this machine for the {engine} engine yet: calibrating once")
        costs, path = run_calibration(engine, console)
        return costs, f"profile {path} (made now)"
    console.print(f"using the built-in costs: no calibration for the {engine} engine here, "
                  "and this machine cannot measure one")
    return Costs(), "built-in costs"


def cmd_calibrate(args, console) -> int:
    from harness.measure import why_not_measurable
    reason = why_not_measurable(args.engine)
    if reason:
        print(f"docksim: {reason}", file=sys.stderr)
        return 2
    costs, path = run_calibration(args.engine, console)
    console.print(costs_table(costs, f"calibration of this machine, {args.engine} engine"))
    console.print(f"wrote {path}")
    return 0


def add_options(parser) -> None:
    """--engine and --calibration, for every command that simulates or measures."""
    parser.add_argument("--engine", choices=("launcher", "docker"), default="launcher",
                        help="the engine measured, and whose calibration the model uses")
    parser.add_argument("--network", choices=("emulated", "kernel"), default="emulated",
                        help="emulated: the registry plays the one link; kernel: network "
                             "namespaces with tbf and delays, a daemon per node (root)")
    parser.add_argument("--calibration", metavar="FILE",
                        help="a profile from `calibrate`, 'builtin', or 'fresh' (calibrate "
                             "now); default: this machine's saved profile, made on first use")


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="measure this machine and engine; save the model's costs")
    p.add_argument("--engine", choices=("launcher", "docker"), default="launcher")
    p.set_defaults(func=cmd_calibrate)
