"""`validate`: every scenario under scenarios/validation/, simulated and measured
on each engine, summed up as one table of errors.

For each engine the model uses that engine's calibration (made first if this
machine has none): the costs come from calibration's own workload, never from
the validation scenarios, so the table says how well the model predicts
worlds it was not fitted to.
"""
from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

from cli.calibration import resolve_costs

PROJECT = Path(__file__).resolve().parent.parent
METRICS = ("pull_s", "startup_s", "total_s")


def validate_scenario(path: Path, engine: str, costs, console) -> list[dict]:
    """Comparison rows of one scenario on one engine, tagged with both names."""
    import model
    from analysis.compare import comparison_rows
    from harness.measure import measure
    from vocab.scenario import load_scenario
    from vocab.trace import summarize
    scenario = load_scenario(path)
    sim = summarize(model.simulate(scenario, costs=costs), scenario.name, "sim", "model",
                    scenario.replications)
    with console.status(f"measuring {scenario.name} on {engine}"):
        rows = measure(scenario, engine=engine)
    real = summarize(rows, scenario.name, "real", engine, scenario.replications)
    return [{"engine": engine, "scenario": scenario.name, **row} for row in comparison_rows(sim, real)]


def error_summary(rows: list[dict]) -> list[dict]:
    """Per engine, scenario and metric: median |error| and the worst error (signed)."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        if row["error_pct"] is not None:
            groups.setdefault((row["engine"], row["scenario"], row["metric"]), []).append(row["error_pct"])
    return [{"engine": e, "scenario": s, "metric": m, "requests": len(errors),
             "median_abs_error_pct": statistics.median(abs(x) for x in errors),
             "worst_error_pct": max(errors, key=abs)}
            for (e, s, m), errors in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                            METRICS.index(kv[0][2])))]


def _table(summary: list[dict]):
    from rich.table import Table
    table = Table(title="validation: model vs measurement", title_justify="left")
    for column in ("engine", "scenario", "metric", "requests", "median |error|", "worst error"):
        table.add_column(column, justify="left" if column in ("engine", "scenario", "metric") else "right")
    for row in summary:
        table.add_row(row["engine"], row["scenario"], row["metric"], str(row["requests"]),
                      f"{row['median_abs_error_pct']:.1f} %", f"{row['worst_error_pct']:+.1f} %")
    return table


def cmd_validate(args, console) -> int:
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
    rows: list[dict] = []
    for engine in engines:
        costs, source = resolve_costs(args.calibration, engine, console)
        console.print(f"{engine}: the model uses {source}")
        for path in paths:
            rows += validate_scenario(path, engine, costs, console)
    summary = error_summary(rows)
    console.print(_table(summary))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, table in (("validation-requests.csv", rows), ("validation.csv", summary)):
            with open(args.out / name, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(table[0]), lineterminator="\n")
                writer.writeheader()
                writer.writerows(table)
        console.print(f"wrote {args.out}/validation.csv and validation-requests.csv")
    return 0


def register(sub) -> None:
    p = sub.add_parser("validate", help="every validation scenario on both engines: one error table")
    p.add_argument("--engine", choices=("launcher", "docker", "both"), default="both")
    p.add_argument("--dir", dest="directory", type=Path, default=PROJECT / "scenarios" / "validation",
                   help="the scenarios to validate (default: scenarios/validation)")
    p.add_argument("--calibration", metavar="FILE", help="a profile, or 'builtin' (one engine only)")
    p.add_argument("--out", type=Path, help="also write the tables as CSV here")
    p.set_defaults(func=cmd_validate)
