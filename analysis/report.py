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

from analysis.style import lecture_figure, lecture_style, save_figure
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
    title = f"{scenario.name}: {label}, replication 0"
    if any(row.replication == 0 for row in rows):
        figure = timeline_figure(rows, title)
    else:  # Poisson steps may draw no arrival at all: a valid, empty world
        figure = _empty_timeline(title)
    save_figure(figure, out / "timeline")
    return summary


def _empty_timeline(title: str):
    figure, ax = lecture_figure()
    with lecture_style():
        ax.set_title(title, loc="left")
        ax.text(0.5, 0.5, "no request in this replication", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
    return figure


def read_trace_dir(path: Path) -> tuple[list[PhaseRow], dict]:
    rows = read_csv(path / "trace.csv")
    summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    return rows, summary
