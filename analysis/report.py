"""A trace directory: what `run` and `measure` write, and `compare` reads.

DIR/trace.csv      one row per phase occurrence (vocab.trace.COLUMNS)
DIR/summary.json   per request, the median over replications of each metric,
                   and a `meta` block: scenario, seed, versions, machine, costs
DIR/timeline.png   one bar per phase per request (and .svg)
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

from analysis.style import save_figure
from analysis.timeline import timeline_figure
from vocab.scenario import Scenario
from vocab.trace import PhaseRow, read_csv, summarize, write_csv


def machine_facts() -> dict:
    return {"system": platform.system(), "kernel": platform.release(),
            "machine": platform.machine(), "python": platform.python_version()}


def write_trace_dir(rows: list[PhaseRow], out: Path, scenario: Scenario, source: str,
                    engine: str, meta: dict) -> dict:
    """Write the three outputs; return the summary document."""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "trace.csv")
    summary = summarize(rows, scenario.name, source, engine, scenario.replications, meta)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    label = "simulated" if source == "sim" else f"measured ({engine})"
    figure = timeline_figure(rows, f"{scenario.name}: {label}, replication 0")
    save_figure(figure, out / "timeline")
    return summary


def read_trace_dir(path: Path) -> tuple[list[PhaseRow], dict]:
    rows = read_csv(path / "trace.csv")
    summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    return rows, summary
