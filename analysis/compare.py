"""The error table: the model's summary joined with the measured one.

Both inputs are summary.json documents (``vocab.trace.summarize``), one per
source.  Requests are matched on (step, client, repeat); for each metric of
``vocab.trace.METRICS`` that both sides report (not None), one row::

    step, client, repeat, metric, simulated_s, measured_s, error_pct

with ``error_pct = 100 * (simulated - measured) / measured``: positive when the
model is slower than reality.  It is None when the measured value is 0 (a warm
request pulls nothing: there is no relative error to speak of).

`compare` and `validate` first pool the requests a scenario cannot tell apart
(analysis/exchangeable.py).  Nothing here prints; ``format_table`` returns
text for the CLI to show.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterable

from analysis.select import median
from vocab.trace import METRICS, request_id

COLUMNS = ("step", "client", "repeat", "metric", "simulated_s", "measured_s", "error_pct")
ERROR_COLUMNS = ("metric", "count", "median_abs_error_pct", "worst_error_pct", "worst_request")
_KEY = ("step", "client", "repeat")


def load_summary(path: str | Path) -> dict:
    """Read a summary.json document."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def error_pct(simulated_s: float, measured_s: float) -> float | None:
    """100 x (simulated - measured) / measured; None when measured is 0."""
    if measured_s == 0:
        return None
    return 100.0 * (simulated_s - measured_s) / measured_s


def _by_key(summary: dict) -> dict[tuple[int, int, int], dict]:
    return {tuple(item[k] for k in _KEY): item for item in summary.get("requests", [])}


def comparison_rows(sim_summary: dict, real_summary: dict) -> list[dict]:
    """One row per (request, metric) present on both sides; see the module docstring.

    Rows come in request order (step, client, repeat), metrics in METRICS
    order.  Requests found on one side only are left out.
    """
    sims, reals = _by_key(sim_summary), _by_key(real_summary)
    rows = []
    for key in sorted(sims.keys() & reals.keys()):
        for metric in METRICS:
            simulated_s, measured_s = sims[key].get(metric), reals[key].get(metric)
            if simulated_s is None or measured_s is None:
                continue
            rows.append(dict(zip(_KEY, key), metric=metric, simulated_s=simulated_s,
                             measured_s=measured_s, error_pct=error_pct(simulated_s, measured_s)))
    return rows


def _csv_cell(column: str, value) -> str:
    if value is None:
        return ""
    if column.endswith("_pct"):
        return f"{value:.2f}"
    if column.endswith("_s"):
        return f"{value:.6f}"
    return str(value)


def format_rows_csv(rows: Iterable[dict], columns: Iterable[str] = COLUMNS) -> str:
    """Rows of dicts as CSV text: seconds (``_s``) with 6 decimals, percentages
    (``_pct``) with 2, an empty cell for None, "\\n" line ends."""
    columns = list(columns)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(column, row.get(column)) for column in columns])
    return out.getvalue()


def write_rows_csv(rows: Iterable[dict], path: str | Path, columns: Iterable[str] = COLUMNS) -> Path:
    """Write ``format_rows_csv(rows, columns)`` to ``path``; returns the path."""
    path = Path(path)
    path.write_text(format_rows_csv(rows, columns), encoding="utf-8")
    return path


def format_comparison_csv(rows: Iterable[dict]) -> str:
    """The comparison as CSV text, header COLUMNS (see ``format_rows_csv``)."""
    return format_rows_csv(rows, COLUMNS)


def write_comparison_csv(rows: Iterable[dict], path: str | Path) -> Path:
    """Write ``format_comparison_csv(rows)`` to ``path``; returns the path."""
    return write_rows_csv(rows, path, COLUMNS)


def error_stats(errors: Iterable[float]) -> dict:
    """How far off a group of signed errors (percent) is: their count, the median
    of their magnitudes, and the one of largest magnitude (None without any)."""
    errors = list(errors)
    return {"count": len(errors), "median_abs_error_pct": median(abs(e) for e in errors),
            "worst_error_pct": max(errors, key=abs, default=None)}


def error_table(rows: Iterable[dict]) -> list[dict]:
    """Per metric (METRICS order, those present): how far off the model is.

    count                 rows with a defined error (measured value not 0)
    median_abs_error_pct  median of |error_pct|, None without any
    worst_error_pct       the signed error with the largest magnitude
    worst_request         where it happened, as a request id ``s0-c0-r1``
    """
    per_metric: dict[str, list[dict]] = {}
    for row in rows:
        per_metric.setdefault(row["metric"], []).append(row)
    table = []
    for metric in [m for m in METRICS if m in per_metric]:
        defined = [row for row in per_metric[metric] if row["error_pct"] is not None]
        worst = max(defined, key=lambda row: abs(row["error_pct"]), default=None)
        table.append({"metric": metric, **error_stats(row["error_pct"] for row in defined),
                      "worst_request": request_id(*(worst[k] for k in _KEY)) if worst else None})
    return table


def _text_cell(column: str, value) -> str:
    if value is None:
        return "-"
    if column.endswith("_pct"):
        return f"{value:+.2f} %" if column in ("error_pct", "worst_error_pct") else f"{value:.2f} %"
    if column.endswith("_s"):
        return f"{value:.6f}"
    return str(value)


def format_table(rows: list[dict]) -> str:
    """A plain-text table of comparison rows or of ``error_table`` rows.

    Columns are the keys of the first row; numbers are right-aligned, seconds
    with 6 decimals, percentages with 2 and a sign for errors, None as "-".
    Returns "" for no rows.  Ends without a newline.
    """
    if not rows:
        return ""
    columns = list(rows[0])
    cells = [[_text_cell(c, row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows)
               for c in columns]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(columns), rule] + [line(values) for values in cells])
