#!/usr/bin/env python3
"""docksim: Docker's client-server architecture, simulated and measured.

  python simulate.py run SCENARIO --out DIR       the SimPy model's prediction
  python simulate.py measure SCENARIO --out DIR   the same scenario on docksim's real engine
  python simulate.py compare SCENARIO --out DIR   both, side by side, with an error table

Bad input gets one line on stderr naming the file and key, and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent
sys.path.insert(0, str(PROJECT))

from vocab.schema import ScenarioError  # noqa: E402
from vocab.scenario import Scenario, load_scenario  # noqa: E402


def _console():
    from rich.console import Console
    return Console(highlight=False)


def _summary_table(summary: dict, title: str):
    from rich.table import Table
    table = Table(title=title, title_justify="left")
    for column in ("request", "command", "image", "pull_s", "startup_s", "total_s"):
        table.add_column(column, justify="left" if column in ("request", "command", "image") else "right")
    for r in summary["requests"]:
        cells = [f"s{r['step']}-c{r['client']}-r{r['repeat']}", r["command"], r["image"]]
        cells += ["-" if r[m] is None else f"{r[m]:.3f}" for m in ("pull_s", "startup_s", "total_s")]
        table.add_row(*cells)
    return table


def _meta(scenario: Scenario, extra: dict) -> dict:
    from analysis.report import machine_facts
    from launcher import VERSION
    return {"scenario_file": scenario.source, "seed": scenario.seed, "docksim": VERSION,
            "machine": machine_facts(), **extra}


def simulate_to(scenario: Scenario, out: Path) -> tuple[list, dict]:
    import dataclasses

    import simpy

    import model
    from analysis.report import write_trace_dir
    costs = model.Costs()
    rows = model.simulate(scenario, costs=costs)
    meta = _meta(scenario, {"simpy": simpy.__version__, "costs": dataclasses.asdict(costs)})
    return rows, write_trace_dir(rows, out, scenario, "sim", "model", meta)


def measure_to(scenario: Scenario, out: Path, console) -> tuple[list, dict]:
    from analysis.report import write_trace_dir
    from harness.measure import measure
    with console.status("measuring") as status:
        def progress(message: str) -> None:
            if message.startswith("warning:"):
                console.print(message)  # stays on screen, unlike the status line
            else:
                status.update(f"measuring: {message}")
        rows = measure(scenario, progress=progress, keep_logs=out / "logs")
    return rows, write_trace_dir(rows, out, scenario, "real", "launcher", _meta(scenario, {}))


def cmd_run(args, scenario: Scenario, console) -> int:
    _, summary = simulate_to(scenario, args.out)
    console.print(_summary_table(summary, f"{scenario.name}: simulated (median of "
                                          f"{scenario.replications} replications)"))
    console.print(f"wrote {args.out}/trace.csv, summary.json, timeline.png, timeline.svg")
    return 0


def cmd_measure(args, scenario: Scenario, console) -> int:
    from harness.measure import why_not_measurable
    reason = why_not_measurable()
    if reason:
        print(f"docksim: {reason}", file=sys.stderr)
        return 2
    _, summary = measure_to(scenario, args.out, console)
    console.print(_summary_table(summary, f"{scenario.name}: measured on docksim's engine "
                                          f"(median of {scenario.replications} replications)"))
    console.print(f"wrote {args.out}/trace.csv, summary.json, timeline.png, timeline.svg")
    return 0


def cmd_compare(args, scenario: Scenario, console) -> int:
    from analysis.compare import comparison_rows, error_table, format_table, write_comparison_csv
    from analysis.comparison_chart import comparison_figure
    from analysis.style import save_figure
    from harness.measure import why_not_measurable
    sim_rows, sim_summary = simulate_to(scenario, args.out / "sim")
    console.print(_summary_table(sim_summary, f"{scenario.name}: simulated"))
    reason = why_not_measurable()
    if reason:
        console.print(f"[bold]not measured:[/bold] {reason}; wrote only the simulated half "
                      f"to {args.out}/sim")
        return 0
    real_rows, real_summary = measure_to(scenario, args.out / "real", console)
    console.print(_summary_table(real_summary, f"{scenario.name}: measured"))
    rows = comparison_rows(sim_summary, real_summary)
    write_comparison_csv(rows, args.out / "comparison.csv")
    # the median replication of each side, so the chart agrees with the table's medians
    save_figure(comparison_figure(sim_rows, real_rows, f"{scenario.name}: simulated vs measured "
                                  "(median replication)", replication=None),
                args.out / "comparison")
    console.print(format_table(rows))
    worst = error_table(rows)
    (args.out / "errors.json").write_text(json.dumps(worst, indent=2) + "\n")
    console.print(f"wrote {args.out}/comparison.csv, comparison.png, comparison.svg")
    return 0


COMMANDS = {"run": cmd_run, "measure": cmd_measure, "compare": cmd_compare}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="simulate.py", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "simulate a scenario with the SimPy model"),
                            ("measure", "play a scenario on docksim's real engine (root)"),
                            ("compare", "simulate and measure, then compare")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("scenario", type=Path, help="scenario file (TOML)")
        p.add_argument("--out", type=Path, required=True, help="output directory")
        p.add_argument("--seed", type=int, help="override [scenario] seed")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    console = _console()
    try:
        scenario = load_scenario(args.scenario)
        if args.seed is not None:
            if args.seed < 0:
                raise ScenarioError(f"--seed: must not be negative, not {args.seed}")
            scenario = scenario.with_seed(args.seed)
        if args.out.exists() and not args.out.is_dir():
            raise ScenarioError(f"--out: {args.out} exists and is not a directory")
        return COMMANDS[args.command](args, scenario, console)
    except ScenarioError as exc:
        print(f"docksim: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("docksim: interrupted; everything started was stopped", file=sys.stderr)
        return 130
    except Exception as exc:
        from harness.clients import MeasureError
        if isinstance(exc, MeasureError):
            print(f"docksim: measure failed: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
