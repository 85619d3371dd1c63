"""`run`, `measure` and `compare`: one scenario simulated, measured, or both."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.calibration import add_options
from cli.common import meta, summary_table
from vocab.schema import ScenarioError
from vocab.scenario import Scenario, load_scenario


def load(args: argparse.Namespace) -> Scenario:
    """The scenario named on the command line, with --seed applied; checks --out."""
    from sweep.grid import single_overrides
    scenario = load_scenario(args.scenario, overrides=single_overrides(args.set))
    if args.seed is not None:
        if args.seed < 0:
            raise ScenarioError(f"--seed: must not be negative, not {args.seed}")
        scenario = scenario.with_seed(args.seed)
    if args.out.exists() and not args.out.is_dir():
        raise ScenarioError(f"--out: {args.out} exists and is not a directory")
    return scenario


def simulate_to(scenario: Scenario, out: Path, args, console) -> tuple[list, dict]:
    import dataclasses

    import simpy

    import model
    from analysis.report import write_trace_dir
    from cli.calibration import resolve_costs
    from model.tcp import kernel_link_model
    costs, source = resolve_costs(args.calibration, args.engine, console)
    if getattr(args, "network", "emulated") == "kernel":
        scenario, costs = kernel_link_model(scenario, costs)
        source += ", with TCP framing, slow start and connection set-up for kernel links"
    rows = model.simulate(scenario, costs=costs)
    extra = {"simpy": simpy.__version__, "costs": dataclasses.asdict(costs), "costs_from": source}
    return rows, write_trace_dir(rows, out, scenario, "sim", "model", meta(scenario, extra))


def measure_to(scenario: Scenario, out: Path, engine: str, console,
               network: str = "emulated") -> tuple[list, dict]:
    from analysis.report import write_trace_dir
    from harness.measure import measure
    with console.status("measuring") as status:
        def progress(message: str) -> None:
            if message.startswith("warning:"):
                console.print(message)  # stays on screen, unlike the status line
            else:
                status.update(f"measuring: {message}")
        rows = measure(scenario, progress=progress, keep_logs=out / "logs", engine=engine,
                       network=network)
    return rows, write_trace_dir(rows, out, scenario, "real", engine, meta(scenario, {}))


def cmd_run(args, console) -> int:
    scenario = load(args)
    _, summary = simulate_to(scenario, args.out, args, console)
    console.print(summary_table(summary, f"{scenario.name}: simulated (median of "
                                         f"{scenario.replications} replications)"))
    console.print(f"wrote {args.out}/trace.csv, summary.json, timeline.png, timeline.svg")
    return 0


def cmd_measure(args, console) -> int:
    from harness.measure import why_not_measured
    scenario = load(args)
    reason = why_not_measured(scenario, args.engine, args.network)
    if reason:
        print(f"docksim: {reason}", file=sys.stderr)
        return 2
    _, summary = measure_to(scenario, args.out, args.engine, console, args.network)
    console.print(summary_table(summary, f"{scenario.name}: measured on the {args.engine} engine "
                                         f"(median of {scenario.replications} replications)"))
    console.print(f"wrote {args.out}/trace.csv, summary.json, timeline.png, timeline.svg")
    return 0


def cmd_compare(args, console) -> int:
    from analysis.compare import (comparison_rows, error_table, format_table, write_comparison_csv,
                                  write_rows_csv)
    from analysis.comparison_chart import comparison_figure
    from analysis.exchangeable import pooled_summaries
    from analysis.phase_compare import PHASE_COLUMNS, phase_rows
    from analysis.style import save_figure
    from harness.measure import why_not_measured
    scenario = load(args)
    sim_rows, sim_summary = simulate_to(scenario, args.out / "sim", args, console)
    console.print(summary_table(sim_summary, f"{scenario.name}: simulated"))
    reason = why_not_measured(scenario, args.engine, args.network)
    if reason:
        console.print(f"[bold]not measured:[/bold] {reason}; wrote only the simulated half "
                      f"to {args.out}/sim")
        return 0
    real_rows, real_summary = measure_to(scenario, args.out / "real", args.engine, console,
                                          args.network)
    console.print(summary_table(real_summary, f"{scenario.name}: measured"))
    # requests the scenario cannot tell apart are compared as one group
    rows = comparison_rows(*pooled_summaries(scenario, sim_rows, sim_summary, real_rows, real_summary))
    write_comparison_csv(rows, args.out / "comparison.csv")
    write_rows_csv(phase_rows(sim_rows, real_rows), args.out / "comparison-phases.csv", PHASE_COLUMNS)
    # the median replication of each side, so the chart agrees with the table's medians
    save_figure(comparison_figure(sim_rows, real_rows, f"{scenario.name}: simulated vs measured "
                                  "(median replication)", replication=None),
                args.out / "comparison")
    console.print(format_table(rows))
    (args.out / "errors.json").write_text(json.dumps(error_table(rows), indent=2) + "\n")
    console.print(f"wrote {args.out}/comparison.csv, comparison-phases.csv, comparison.png, "
                  "comparison.svg")
    return 0


def register(sub) -> None:
    for name, func, help_text in (
            ("run", cmd_run, "simulate a scenario with the SimPy model"),
            ("measure", cmd_measure, "play a scenario on docksim's real engine (root)"),
            ("compare", cmd_compare, "simulate and measure, then compare")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("scenario", type=Path, help="scenario file (TOML)")
        p.add_argument("--out", type=Path, required=True, help="output directory")
        p.add_argument("--seed", type=int, help="override [scenario] seed")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a scenario value, e.g. network.bandwidth_mbps=10 "
                       "or step[0].clients=2 (repeatable)")
        add_options(p)
        p.set_defaults(func=func)
