"""Picking what a chart shows out of a trace: one replication, grouped by request.

Pure functions over ``vocab.trace.PhaseRow`` lists; no drawing here.
"""
from __future__ import annotations

import statistics
from typing import Iterable

from vocab.trace import PhaseRow, parse_request_id, request_metrics, sort_rows

# The comparison's segments, in stacking order: the daemon's phases as the
# client sees them one after the other, then whatever else the request took.
SEGMENTS = ("pull", "create", "start", "run", "remove", "client")


def replications(rows: Iterable[PhaseRow]) -> list[int]:
    """The replication numbers present in a trace, ascending."""
    return sorted({row.replication for row in rows})


def median_replication(rows: Iterable[PhaseRow]) -> int:
    """The replication whose summed request time is the median one.

    With an even count the lower of the two middle ones is taken, so the answer
    is always a replication that happened.  Ties go to the smallest number.
    """
    totals: dict[int, float] = {}
    for (replication, _), entry in request_metrics(rows).items():
        totals[replication] = totals.get(replication, 0.0) + (entry["total_s"] or 0.0)
    if not totals:
        raise ValueError("the trace has no rows")
    ranked = sorted(totals, key=lambda rep: (totals[rep], rep))
    return ranked[(len(ranked) - 1) // 2]


def resolve_replication(rows: list[PhaseRow], replication: int | None) -> int:
    """``replication`` itself, or the median one when it is None; checked."""
    if replication is None:
        return median_replication(rows)
    if replication not in replications(rows):
        raise ValueError(f"replication {replication} is not in the trace "
                         f"(present: {replications(rows)})")
    return replication


def by_request(rows: Iterable[PhaseRow], replication: int) -> dict[str, list[PhaseRow]]:
    """One replication's rows grouped per request, requests in id order."""
    groups: dict[str, list[PhaseRow]] = {}
    for row in sort_rows(r for r in rows if r.replication == replication):
        groups.setdefault(row.request, []).append(row)
    return {request: groups[request] for request in sorted(groups, key=parse_request_id)}


def request_label(request: str, rows: list[PhaseRow]) -> str:
    """A lane's name: the request id and its command, e.g. ``s0-c0-r1 run``."""
    return f"{request} {rows[0].command}" if rows else request


def request_span_s(rows: list[PhaseRow]) -> tuple[float, float]:
    """Start and end of a request: its ``request`` row, else all its rows."""
    own = [row for row in rows if row.phase == "request"] or rows
    return min(row.start_s for row in own), max(row.end_s for row in own)


def segment_durations_s(rows: list[PhaseRow]) -> dict[str, float]:
    """Seconds per segment of one request (see SEGMENTS).

    A phase seen several times is summed.  ``client`` is the request's time not
    covered by the other segments (never negative): the CLI, the API round trip
    and any waiting in the daemon outside the named phases.
    """
    durations = {segment: 0.0 for segment in SEGMENTS}
    for row in rows:
        if row.phase in durations:
            durations[row.phase] += row.duration_s
    start_s, end_s = request_span_s(rows)
    named_s = sum(durations[s] for s in SEGMENTS if s != "client")
    durations["client"] = max(0.0, (end_s - start_s) - named_s)
    return durations


def request_total_s(rows: list[PhaseRow]) -> float:
    """The request's duration as the client saw it."""
    start_s, end_s = request_span_s(rows)
    return end_s - start_s


def median(values: Iterable[float]) -> float | None:
    """The median of the values, or None when there are none."""
    values = list(values)
    return statistics.median(values) if values else None
