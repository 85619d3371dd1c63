"""Requests a scenario cannot tell apart, compared as one group.

The clients of a step whose requests are all sent at the step's `at_s` (fixed
arrivals) for the one image it names, on the same node, are interchangeable:
nothing in the scenario says which of them comes first.  Reality decides by
chance, and differently every time -- of ten `docker run`s sent at once to
docksim's daemon the fastest started in 55 ms and the slowest in 128 ms, and
which client was fastest changed from one replication to the next.  A
per-client median over a scenario's three replications mostly measures that
chance, and the model, which breaks such ties by client number, would be
judged on its tie-breaking.

So a comparison pools each group: every request of it gets, for each metric,
the median over the whole group and every replication, on both sides.  How
much the requests of a group differ from one another is not compared (README,
"Where the model is still wrong").  Requests of different steps, repeats or
nodes, and of steps with Poisson arrivals or several images, stay apart.
"""
from __future__ import annotations

import statistics
from typing import Iterable

from vocab.scenario import Scenario
from vocab.trace import METRICS, PhaseRow, parse_request_id, request_id, request_metrics


def request_groups(scenario: Scenario, rows: Iterable[PhaseRow]) -> dict[str, tuple]:
    """request id -> the key of its group (see the module docstring)."""
    groups: dict[str, tuple] = {}
    for row in rows:
        if row.request in groups:
            continue
        step_index, _, repeat = parse_request_id(row.request)
        step = scenario.steps[step_index]
        alike = step.arrivals == "fixed" and len(step.choices) == 1
        groups[row.request] = (step_index, repeat, row.node) if alike else (row.request,)
    return groups


def pooled_summary(summary: dict, rows: list[PhaseRow], groups: dict[str, tuple]) -> dict:
    """`summary` (vocab.trace.summarize of `rows`) with each request's metrics
    replaced by its group's median over every request and replication."""
    samples: dict[tuple, dict[str, list[float]]] = {}
    for (_, request), entry in request_metrics(rows).items():
        bucket = samples.setdefault(groups[request], {metric: [] for metric in METRICS})
        for metric in METRICS:
            if entry[metric] is not None:
                bucket[metric].append(entry[metric])
    requests = []
    for item in summary["requests"]:
        bucket = samples[groups[request_id(item["step"], item["client"], item["repeat"])]]
        requests.append({**item, **{metric: round(statistics.median(values), 6) if values else None
                                    for metric, values in bucket.items()}})
    return {**summary, "requests": requests}


def pooled_summaries(scenario: Scenario, sim_rows: list[PhaseRow], sim_summary: dict,
                     real_rows: list[PhaseRow], real_summary: dict) -> tuple[dict, dict]:
    """Both sides of a comparison pooled by the same groups."""
    groups = request_groups(scenario, [*real_rows, *sim_rows])
    return (pooled_summary(sim_summary, sim_rows, groups),
            pooled_summary(real_summary, real_rows, groups))
