"""The error report per phase: where inside a request the model and reality part.

The request-level table (analysis/compare.py) says *that* a pull is 20 % off;
this one says *which* phase is: the resolve round trips, one layer's download
or extraction, the container's create or start.  Both traces are reduced the
same way before they are joined:

* per replication, the durations of one request's rows of one phase and layer
  are summed (a download retried after a cut is two rows, one phase);
* per (request, phase, layer), the median over the replications that have it.

A row of the result::

    step, client, repeat, phase, layer, simulated_s, measured_s, error_pct

for every (request, phase, layer) found on both sides, in request order, then
in the trace's phase order (vocab.trace.PHASES), then by layer.
"""
from __future__ import annotations

import statistics
from typing import Iterable

from analysis.compare import error_pct, error_stats
from vocab.trace import PHASES, PhaseRow, parse_request_id

PHASE_COLUMNS = ("step", "client", "repeat", "phase", "layer", "simulated_s", "measured_s",
                 "error_pct")
Key = tuple[str, str, str]  # request, phase, layer


def phase_medians(rows: Iterable[PhaseRow]) -> dict[Key, float]:
    """(request, phase, layer) -> the median over replications of its summed duration."""
    sums: dict[Key, dict[int, float]] = {}
    for row in rows:
        per_replication = sums.setdefault((row.request, row.phase, row.layer), {})
        per_replication[row.replication] = per_replication.get(row.replication, 0.0) + row.duration_s
    return {key: statistics.median(values.values()) for key, values in sums.items()}


def _order(key: Key) -> tuple:
    request, phase, layer = key
    return parse_request_id(request), PHASES.index(phase), layer


def phase_rows(sim_rows: Iterable[PhaseRow], real_rows: Iterable[PhaseRow]) -> list[dict]:
    """One row per (request, phase, layer) present in both traces; see the module docstring."""
    sims, reals = phase_medians(sim_rows), phase_medians(real_rows)
    table = []
    for key in sorted(sims.keys() & reals.keys(), key=_order):
        request, phase, layer = key
        step, client, repeat = parse_request_id(request)
        table.append({"step": step, "client": client, "repeat": repeat, "phase": phase,
                      "layer": layer, "simulated_s": sims[key], "measured_s": reals[key],
                      "error_pct": error_pct(sims[key], reals[key])})
    return table


def phase_summary(rows: Iterable[dict]) -> list[dict]:
    """Per phase (PHASES order): rows with a defined error, the median |error| and the
    worst (signed) error, so a reader sees which phase the model gets least right."""
    per_phase: dict[str, list[float]] = {}
    for row in rows:
        if row["error_pct"] is not None:
            per_phase.setdefault(row["phase"], []).append(row["error_pct"])
    return [{"phase": phase, **error_stats(errors)}
            for phase, errors in sorted(per_phase.items(), key=lambda kv: PHASES.index(kv[0]))]
