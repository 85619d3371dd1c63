"""`validate`: every scenario under scenarios/validation/, simulated and measured
on each engine, summed up as one table of errors.

For each engine the model uses that engine's calibration (made first if this
machine has none): the costs come from calibration's own workload, never from
the validation scenarios, so the table says how well the model predicts
worlds it was not fitted to.  A scenario that starts containers is, by
default, modelled with container costs sampled between its replications
(calibration's cached runs again, never the scenario: harness/drift.py),
because this VM's container operations drift for tens of seconds at a time.

It prints three tables: per scenario and metric, per phase (which part of a
request the model gets least right), and the targets (analysis/validation.py);
it exits 1 when a target is missed.  `--network kernel` measures on namespaces
with real TCP, and also plays the scenarios with several nodes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.calibration import resolve_costs

PROJECT = Path(__file__).resolve().parent.parent


def validate_scenario(scenario, engine: str, network: str, costs, console,
                      sample_containers: bool = False) -> tuple[list, list]:
    """Comparison rows of one scenario on one engine (per request, tagged with
    wire time) and its per-phase rows, both tagged with engine and scenario.
    With `sample_containers`, a scenario that starts containers is modelled with
    container costs sampled between its replications (harness/drift.py)."""
    import model
    from analysis.compare import comparison_rows
    from analysis.exchangeable import pooled_summaries
    from analysis.phase_compare import phase_rows
    from analysis.validation import tag_bandwidth_bound, wire_seconds
    from model.tcp import kernel_link_model
    from harness.drift import ContainerSampler, starts_containers
    from harness.measure import measure
    from vocab.trace import summarize
    with console.status(f"measuring {scenario.name} on {engine} ({network} network)") as status:
        def progress(message: str) -> None:
            status.update(f"measuring {scenario.name} on {engine}: {message}")
        sampler = (ContainerSampler(engine, scenario.replications, progress)
                   if sample_containers and starts_containers(scenario) else None)
        real_rows = measure(scenario, engine=engine, network=network, progress=progress,
                            between=sampler)
    if sampler is not None:
        costs = sampler.costs(costs)
        answer = (f" (answered {costs.start_answer_s * 1e3:.2f} ms after the exec)"
                  if costs.start_answer_s else "")
        console.print(f"{scenario.name}: container costs sampled between its replications: "
                      f"create {costs.create_s * 1e3:.2f} ms, start {costs.start_s * 1e3:.2f} ms"
                      f"{answer}, API call {costs.api_call_s * 1e3:.2f} ms, parallelism "
                      f"{costs.container_parallelism:.2f}")
    modelled = kernel_link_model(scenario, costs) if network == "kernel" else (scenario, costs)
    sim_rows = model.simulate(modelled[0], costs=modelled[1])
    sim, real = pooled_summaries(
        scenario, sim_rows, summarize(sim_rows, scenario.name, "sim", "model", scenario.replications),
        real_rows, summarize(real_rows, scenario.name, "real", engine, scenario.replications))
    tag = {"engine": engine, "scenario": scenario.name}
    requests = tag_bandwidth_bound(comparison_rows(sim, real), wire_seconds(real_rows))
    return ([{**tag, **row} for row in requests],
            [{**tag, **row} for row in phase_rows(sim_rows, real_rows)])


def error_summary(rows: list[dict]) -> list[dict]:
    """Per engine, scenario and metric: analysis.compare.error_table of its requests."""
    from analysis.compare import error_table
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["engine"], row["scenario"]), []).append(row)
    return [{"engine": engine, "scenario": scenario, **line}
            for (engine, scenario), group in sorted(groups.items()) for line in error_table(group)
            if line["count"]]


def _table(summary: list[dict]):
    from rich.table import Table
    table = Table(title="validation: model vs measurement", title_justify="left")
    for column in ("engine", "scenario", "metric", "requests", "median |error|", "worst error"):
        table.add_column(column, justify="left" if column in ("engine", "scenario", "metric") else "right")
    for row in summary:
        table.add_row(row["engine"], row["scenario"], row["metric"], str(row["count"]),
                      f"{row['median_abs_error_pct']:.1f} %", f"{row['worst_error_pct']:+.1f} %")
    return table


def _phase_table(by_phase: list[dict]):
    from rich.table import Table
    table = Table(title="per phase", title_justify="left")
    for column in ("engine", "phase", "rows", "median |error|", "worst error"):
        table.add_column(column, justify="left" if column in ("engine", "phase") else "right")
    for row in by_phase:
        table.add_row(row["engine"], row["phase"], str(row["count"]),
                      f"{row['median_abs_error_pct']:.1f} %", f"{row['worst_error_pct']:+.1f} %")
    return table


def _verdict_table(lines: list[dict]):
    from rich.table import Table
    table = Table(title="targets", title_justify="left")
    for column in ("engine", "target", "requests", "value", "bar", "met"):
        table.add_column(column, justify="left" if column in ("engine", "target") else "right")
    for line in lines:
        value = "-" if line["value_pct"] is None else f"{line['value_pct']:+.1f} %"
        met = {True: "yes", False: "[bold red]NO[/bold red]", None: "-"}[line["met"]]
        table.add_row(line["engine"], line["target"], str(line["requests"]), value,
                      f"{line['bar_pct']:.0f} %", met)
    return table


def _playable(paths: list[Path], engines: tuple[str, ...], network: str, console) -> list:
    """The scenarios this network can play (each skipped one is named, with why)."""
    from harness.measure import why_not_measured
    from vocab.scenario import load_scenario
    scenarios = []
    for path in paths:
        scenario = load_scenario(path)
        reasons = {why_not_measured(scenario, engine, network) for engine in engines} - {None}
        if reasons:
            console.print(f"skipped {path.name}: {'; '.join(sorted(reasons))}")
        else:
            scenarios.append(scenario)
    return scenarios


def cmd_validate(args, console) -> int:
    from analysis.compare import write_rows_csv
    from analysis.phase_compare import phase_summary
    from analysis.validation import all_met, verdict
    from harness.measure import why_not_measurable
    engines = ("launcher", "docker") if args.engine == "both" else (args.engine,)
    for engine in engines:
        reason = why_not_measurable(engine)
        if reason:
            print(f"docksim: {reason}", file=sys.stderr)
            return 2
    paths = sorted(Path(args.directory).glob("*.toml"))
    if not paths:
        print(f"docksim: {args.directory}: no scenario files (*.toml)", file=sys.stderr)
        return 2
    scenarios = _playable(paths, engines, args.network, console)
    if not scenarios:
        print(f"docksim: {args.directory}: no scenario can be measured on the {args.network} "
              "network", file=sys.stderr)
        return 2
    rows: list[dict] = []
    phases: list[dict] = []
    for engine in engines:
        costs, source = resolve_costs(args.calibration, engine, console)
        console.print(f"{engine}: the model uses {source}")
        for scenario in scenarios:
            requests, per_phase = validate_scenario(scenario, engine, args.network, costs, console,
                                                    args.sample_containers)
            rows += requests
            phases += per_phase
    summary = error_summary(rows)
    console.print(_table(summary))
    by_phase = [{"engine": engine, **line} for engine in engines
                for line in phase_summary(r for r in phases if r["engine"] == engine)]
    console.print(_phase_table(by_phase))
    lines = verdict(rows)
    console.print(_verdict_table(lines))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, table in (("validation-requests.csv", rows), ("validation.csv", summary),
                            ("validation-phases.csv", phases), ("validation-by-phase.csv", by_phase),
                            ("validation-targets.csv", lines)):
            write_rows_csv(table, args.out / name, list(table[0]) if table else [])
        console.print(f"wrote {args.out}/validation*.csv")
    return 0 if all_met(lines) else 1


def register(sub) -> None:
    p = sub.add_parser("validate", help="every validation scenario on both engines: one error table")
    p.add_argument("--engine", choices=("launcher", "docker", "both"), default="both")
    p.add_argument("--dir", dest="directory", type=Path, default=PROJECT / "scenarios" / "validation",
                   help="the scenarios to validate (default: scenarios/validation)")
    p.add_argument("--network", choices=("emulated", "kernel"), default="emulated",
                   help="emulated: the registry plays the link; kernel: namespaces, tbf and delays "
                   "(also plays the scenarios with several nodes)")
    p.add_argument("--calibration", metavar="FILE", help="a profile (one engine only), 'builtin', or 'fresh': calibrate each "
                   "engine just before validating it (the machine's speed drifts by minutes)")
    p.add_argument("--sample-containers", action=argparse.BooleanOptionalAction, default=True,
                   help="model each scenario that starts containers with container costs sampled "
                   "between its replications, by calibration's own cached runs (default: on; "
                   "this VM's container operations drift by up to 15 %% for tens of seconds)")
    p.add_argument("--out", type=Path, help="also write the tables as CSV here")
    p.set_defaults(func=cmd_validate)
