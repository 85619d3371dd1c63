"""The validation verdict: does the model meet its accuracy targets?

The targets, per engine, over every request of the validation suite:

* the median |error| of `pull_s`, and of `startup_s`, is at most 10 %;
* where the transfer is bandwidth-bound -- the request's downloads spend at
  least a second on the wire -- the median |error| is at most 5 %;
* no single request's `pull_s` or `startup_s` is off by more than 25 %.

A request's error is that of the median over replications on each side
(analysis/compare.py), pooled over the requests the scenario cannot tell apart
(analysis/exchangeable.py).  Cached requests pull nothing (measured 0): they have no
`pull_s` error, but their `startup_s` counts.
"""
from __future__ import annotations

import statistics
from typing import Iterable

from analysis.compare import error_stats
from vocab.trace import PhaseRow, request_id

TARGET_METRICS = ("pull_s", "startup_s")
MEDIAN_BAR_PCT = 10.0
BANDWIDTH_BOUND_BAR_PCT = 5.0
WORST_BAR_PCT = 25.0
BANDWIDTH_BOUND_WIRE_S = 1.0


def wire_seconds(rows: Iterable[PhaseRow]) -> dict[str, float]:
    """request -> the median over replications of the span from its first download's
    start to its last download's end (0 for a request that downloads nothing)."""
    spans: dict[tuple[str, int], list[float]] = {}
    for row in rows:
        if row.phase == "download":
            span = spans.setdefault((row.request, row.replication), [row.start_s, row.end_s])
            span[0], span[1] = min(span[0], row.start_s), max(span[1], row.end_s)
    per_request: dict[str, list[float]] = {}
    for (request, _), (start_s, end_s) in spans.items():
        per_request.setdefault(request, []).append(end_s - start_s)
    return {request: statistics.median(values) for request, values in per_request.items()}


def tag_bandwidth_bound(rows: list[dict], wire_s: dict[str, float]) -> list[dict]:
    """Comparison rows with `wire_s` and `bandwidth_bound` added (from the measured trace)."""
    tagged = []
    for row in rows:
        seconds = wire_s.get(request_id(row["step"], row["client"], row["repeat"]), 0.0)
        tagged.append({**row, "wire_s": seconds,
                       "bandwidth_bound": seconds >= BANDWIDTH_BOUND_WIRE_S})
    return tagged


def _check(engine: str, target: str, errors: list[float], bar_pct: float, worst: bool = False) -> dict:
    stats = error_stats(errors)
    value = stats["worst_error_pct"] if worst else stats["median_abs_error_pct"]
    return {"engine": engine, "target": target, "requests": stats["count"], "value_pct": value,
            "bar_pct": bar_pct, "met": None if value is None else abs(value) <= bar_pct}


def verdict(rows: list[dict]) -> list[dict]:
    """Per engine, one line per target (see the module docstring).  `rows` are
    tagged comparison rows with an `engine` key; `met` is None when no request
    falls under a target (nothing to judge)."""
    lines = []
    for engine in sorted({row["engine"] for row in rows}):
        mine = [r for r in rows if r["engine"] == engine and r["metric"] in TARGET_METRICS
                and r["error_pct"] is not None]
        for metric in TARGET_METRICS:
            errors = [r["error_pct"] for r in mine if r["metric"] == metric]
            lines.append(_check(engine, f"median |error| of {metric}", errors, MEDIAN_BAR_PCT))
        bound = [r["error_pct"] for r in mine if r["bandwidth_bound"]]
        lines.append(_check(engine, "median |error|, bandwidth-bound", bound, BANDWIDTH_BOUND_BAR_PCT))
        lines.append(_check(engine, "worst request", [r["error_pct"] for r in mine], WORST_BAR_PCT,
                            worst=True))
    return lines


def all_met(lines: list[dict]) -> bool:
    """True when no target is missed (a target with nothing to judge is not missed)."""
    return all(line["met"] is not False for line in lines)
