"""What a sweep keeps of one replication: a few numbers per point, not the trace.

For each request metric of ``vocab.trace.request_metrics`` (``total_s``,
``startup_s``, ``pull_s``) the median, 95th percentile and mean over the
replication's requests that have it (``startup_s``: runs only; ``pull_s``:
pulls and runs, 0 when cached), plus:

makespan_s  from the scenario's start (0) to the end of its last phase
requests    the number of requests

Percentiles interpolate linearly between the two nearest order statistics
(numpy's default), so p95 of [1, 2] is 1.95.
"""
from __future__ import annotations

import math
from typing import Iterable

from vocab.trace import METRICS as REQUEST_METRICS
from vocab.trace import PhaseRow, quantile, request_metrics

STATISTICS = ("median", "p95", "mean")
METRICS = tuple(f"{metric}_{stat}" for metric in ("total_s", "startup_s", "pull_s")
                for stat in STATISTICS) + ("makespan_s", "requests")
assert set(REQUEST_METRICS) == {"total_s", "startup_s", "pull_s"}


def replication_metrics(rows: Iterable[PhaseRow]) -> dict[str, float]:
    """The sweep metrics of one replication's rows; a metric no request has is left out."""
    rows = list(rows)
    per_request = request_metrics(rows).values()
    out: dict[str, float] = {}
    for metric in ("total_s", "startup_s", "pull_s"):
        values = [entry[metric] for entry in per_request if entry[metric] is not None]
        if not values:
            continue
        out[f"{metric}_median"] = quantile(values, 0.5)
        out[f"{metric}_p95"] = quantile(values, 0.95)
        out[f"{metric}_mean"] = math.fsum(values) / len(values)
    out["makespan_s"] = max((row.end_s for row in rows), default=0.0)
    out["requests"] = float(len(per_request))
    return {metric: out[metric] for metric in METRICS if metric in out}
