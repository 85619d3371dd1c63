"""The trace: one row per phase occurrence, the same for the model and the engine.

Simulated and measured runs write the same columns, so comparing them is a join
on (replication, request, phase, layer).  Phase names follow what happens inside
Docker when a client sends one command:

request   one CLI command, from send to answer (seen by the client)
resolve   `/v2/` probe, manifest and image config fetched from the registry
download  one layer blob over HTTP, its sha256 checked while it streams
extract   one layer gunzipped and untarred, strictly bottom to top
pull      the whole image pull inside the daemon
create    the container's rootfs snapshot (overlay) and its record
start     namespaces, mounts, pivot_root, until the process has exec'd
run       the container's process runs until it exits
remove    unmount, delete the writable layer, forget the container
"""
from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Iterable

PHASES = ("request", "resolve", "download", "extract", "pull",
          "create", "start", "run", "remove")
SOURCES = ("sim", "real")
ENGINES = ("model", "launcher", "docker")
METRICS = ("pull_s", "startup_s", "total_s")


@dataclass(frozen=True)
class PhaseRow:
    """One phase of one request; times in seconds from the scenario's start."""

    source: str
    engine: str
    replication: int
    node: str
    client: int
    request: str
    command: str
    image: str
    phase: str
    layer: str
    start_s: float
    end_s: float
    bytes: int | None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


COLUMNS = tuple(f.name for f in fields(PhaseRow))


def request_id(step: int, client: int, repeat: int) -> str:
    """The request's name in a trace: step, client and repeat, 0-based."""
    return f"s{step}-c{client}-r{repeat}"


def parse_request_id(request: str) -> tuple[int, int, int]:
    step, client, repeat = request.split("-")
    return int(step[1:]), int(client[1:]), int(repeat[1:])


def _sort_key(row: PhaseRow) -> tuple:
    return (row.replication, parse_request_id(row.request), row.start_s,
            PHASES.index(row.phase), row.layer)


def sort_rows(rows: Iterable[PhaseRow]) -> list[PhaseRow]:
    """The canonical order: replication, request, start time, phase, layer."""
    return sorted(rows, key=_sort_key)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"  # microseconds: fixed text, so traces compare byte for byte
    return str(value)


def format_csv(rows: Iterable[PhaseRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in sort_rows(rows):
        writer.writerow([_cell(v) for v in astuple(row)])
    return out.getvalue()


def write_csv(rows: Iterable[PhaseRow], path: str | Path) -> None:
    Path(path).write_text(format_csv(rows), encoding="utf-8")


def read_csv(path: str | Path) -> list[PhaseRow]:
    """Read a trace written by write_csv; the header must be exactly COLUMNS."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = tuple(next(reader, ()))
        if header != COLUMNS:
            raise ValueError(f"{path}: not a docksim trace (header {header!r})")
        rows = []
        for cells in reader:
            values = dict(zip(COLUMNS, cells))
            rows.append(PhaseRow(
                source=values["source"], engine=values["engine"],
                replication=int(values["replication"]), node=values["node"],
                client=int(values["client"]), request=values["request"],
                command=values["command"], image=values["image"],
                phase=values["phase"], layer=values["layer"],
                start_s=float(values["start_s"]), end_s=float(values["end_s"]),
                bytes=int(values["bytes"]) if values["bytes"] else None))
        return rows


def request_metrics(rows: Iterable[PhaseRow]) -> dict[tuple[int, str], dict]:
    """Per (replication, request): command, image and the three metrics.

    pull_s    the daemon's pull phase (0 when the image was cached)
    startup_s request sent -> the container's process has exec'd (run only)
    total_s   the whole request as the client saw it
    """
    out: dict[tuple[int, str], dict] = {}
    for row in rows:
        entry = out.setdefault((row.replication, row.request), {
            "command": row.command, "image": row.image,
            "pull_s": 0.0, "startup_s": None, "total_s": None, "_sent": None, "_exec": None})
        if row.phase == "request":
            entry["total_s"] = row.duration_s
            entry["_sent"] = row.start_s
        elif row.phase == "pull":
            entry["pull_s"] += row.duration_s
        elif row.phase == "start":
            entry["_exec"] = row.end_s
    for entry in out.values():
        if entry["command"] == "rmi":
            entry["pull_s"] = None
        if entry["command"] == "run" and entry["_exec"] is not None:
            entry["startup_s"] = entry["_exec"] - entry["_sent"]
        del entry["_sent"], entry["_exec"]
    return out


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 6) if values else None


# Student's t, 97.5th percentile, for 1..30 degrees of freedom
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def quantile(values: list[float], q: float) -> float:
    """The q-quantile with linear interpolation between order statistics (numpy's default)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def t975(df: int) -> float:
    """Student's t 97.5 % quantile: a table up to 30 degrees of freedom, then the
    Cornish-Fisher expansion around the normal quantile (error < 1e-4)."""
    if df < 1:
        raise ValueError("t975 needs at least one degree of freedom")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def metric_statistics(by_replication: dict[int, list[float]]) -> dict:
    """Median, p95 and mean of one metric over every request of every replication,
    and a 95 % confidence interval of the mean.

    Requests of one replication share the network and the registry, so they
    are not independent samples; replications are (independent seeded
    streams).  The interval is therefore Student's t over the R replication
    means: mean +- t(0.975, R-1) * sd(means) / sqrt(R); None with R = 1.
    """
    pooled = [v for values in by_replication.values() for v in values]
    if not pooled:
        return {"count": 0, "median": None, "p95": None, "mean": None, "ci95": None}
    means = [statistics.fmean(values) for values in by_replication.values() if values]
    ci95 = None
    if len(means) >= 2:
        half = t975(len(means) - 1) * statistics.stdev(means) / math.sqrt(len(means))
        centre = statistics.fmean(means)
        ci95 = [round(centre - half, 6), round(centre + half, 6)]
    return {"count": len(pooled), "median": round(statistics.median(pooled), 6),
            "p95": round(quantile(pooled, 0.95), 6), "mean": round(statistics.fmean(pooled), 6),
            "ci95": ci95}


def summarize(rows: list[PhaseRow], scenario: str, source: str, engine: str,
              replications: int, meta: dict | None = None) -> dict:
    """The summary.json document: per request, the median of each metric over replications;
    per metric (``metrics``), its distribution over all requests (``metric_statistics``)."""
    per_request: dict[str, list[dict]] = {}
    samples: dict[str, dict[int, list[float]]] = {metric: {} for metric in METRICS}
    for (replication, request), entry in sorted(request_metrics(rows).items()):
        per_request.setdefault(request, []).append(entry)
        for metric in METRICS:
            values = samples[metric].setdefault(replication, [])
            if entry[metric] is not None:
                values.append(entry[metric])
    requests = []
    for request in sorted(per_request, key=parse_request_id):
        entries = per_request[request]
        step, client, repeat = parse_request_id(request)
        item = {"step": step, "client": client, "repeat": repeat,
                "command": entries[0]["command"], "image": entries[0]["image"]}
        for metric in METRICS:
            item[metric] = _median([e[metric] for e in entries])
        requests.append(item)
    doc = {"scenario": scenario, "source": source, "engine": engine,
           "replications": replications, "requests": requests,
           "metrics": {metric: metric_statistics(samples[metric]) for metric in METRICS}}
    if meta:
        doc["meta"] = meta
    return doc
