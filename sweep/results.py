"""A sweep directory: the journal, the tidy results table and the JSON sidecar.

DIR/points.jsonl    the journal: one JSON line per finished point (ok or
                    failed), appended and flushed as each point finishes, so
                    an interrupted sweep knows what is done.  A line is written
                    with one ``write`` call; a torn last line (the process was
                    killed mid-write) is dropped when the sweep resumes.
DIR/results.csv     the tidy table, rebuilt from the journal: one row per
                    point, replication and metric (``RESULT_COLUMNS``).
DIR/results.parquet the same table, when pyarrow is installed.
DIR/sweep.json      what was swept: scenario, grid, replications, seed rule,
                    metrics, versions, and which points failed.

Tables and the sidecar are replaced atomically (written aside, then renamed),
so a Ctrl-C at any moment leaves either the old file or the new one.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from sweep.metrics import METRICS
from vocab.overrides import format_value, parse_value

JOURNAL = "points.jsonl"
SIDECAR = "sweep.json"
CSV_NAME = "results.csv"
PARQUET_NAME = "results.parquet"


def result_columns(keys: Iterable[str]) -> list[str]:
    """``point``, one column per swept key, then ``replication, seed, metric, value``."""
    return ["point", *keys, "replication", "seed", "metric", "value"]


def _atomic_write(path: Path, data: bytes) -> None:
    spare = path.with_name(f".{path.name}.partial")
    spare.write_bytes(data)
    os.replace(spare, path)


def read_journal(out: Path) -> dict[str, dict]:
    """The last record of every point in the journal (a retry replaces a failure)."""
    path = out / JOURNAL
    if not path.exists():
        return {}
    records: dict[str, dict] = {}
    for line in path.read_bytes().split(b"\n"):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # the empty tail, or a line torn by a kill
        records[record["point"]] = record
    return records


class Journal:
    """Appends records to DIR/points.jsonl, one complete line per write."""

    def __init__(self, out: Path):
        path = out / JOURNAL
        if path.exists():
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):  # torn by a kill: cut back to the last line
                with open(path, "r+b") as handle:
                    handle.truncate(data.rfind(b"\n") + 1)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(self, record: dict) -> None:
        line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
        os.write(self._fd, line.encode())  # to the kernel at once: a Ctrl-C later loses nothing

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _metric_order(metrics: dict) -> list[str]:
    # the journal stores metrics with sorted keys: put them back in METRICS order
    return [m for m in METRICS if m in metrics] + sorted(set(metrics) - set(METRICS))


def table_rows(keys: list[str], records: Iterable[dict],
               cell: Callable[[Any], Any] = lambda value: value) -> list[list]:
    """The tidy rows of finished points, as lists in ``result_columns(keys)`` order,
    in the order the records are given; ``cell`` formats the parameter values."""
    rows = []
    for record in records:
        if record.get("status") != "ok":
            continue
        prefix = [record["point"], *(cell(record["params"][key]) for key in keys)]
        for replication, (seed, metrics) in enumerate(zip(record["seeds"], record["metrics"])):
            head = prefix + [replication, seed]
            rows.extend(head + [metric, metrics[metric]] for metric in _metric_order(metrics))
    return rows


def _csv_line(cells: list) -> str:
    """One CSV line, quoted where needed, without its line end."""
    text = io.StringIO()
    csv.writer(text, lineterminator="").writerow(cells)
    return text.getvalue()


def _csv_text(columns: list[str], keys: list[str], records: Iterable[dict]) -> str:
    """The CSV table.  Only the header and a point's own cells may need CSV
    quoting, so they go through the csv module, once per point; the rows after
    that are plain text (replication and seed are integers, metric names are
    identifiers, and a float's repr is the shortest text that reads back to it)."""
    lines = [_csv_line(columns) + "\n"]
    for record in records:
        if record.get("status") != "ok":
            continue
        prefix = _csv_line([record["point"], *(_cell(record["params"][key]) for key in keys)])
        for replication, (seed, metrics) in enumerate(zip(record["seeds"], record["metrics"])):
            lines.extend(f"{prefix},{replication},{seed},{metric},{metrics[metric]!r}\n"
                         for metric in _metric_order(metrics))
    return "".join(lines)


def _cell(value: Any) -> str:
    """A parameter as text that reads back (``parse_value``) to the same value."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (bool, str, list, dict)):
        return format_value(value)
    return str(value)


def write_tables(out: Path, keys: list[str], records: list[dict]) -> list[Path]:
    """results.csv, and results.parquet when pyarrow is importable; returns the paths."""
    columns = result_columns(keys)
    _atomic_write(out / CSV_NAME, _csv_text(columns, keys, records).encode())
    written = [out / CSV_NAME]
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        return written
    rows = table_rows(keys, records, _arrow_value)
    data = {column: [row[i] for row in rows] for i, column in enumerate(columns)}
    table = pyarrow.table({c: pyarrow.array(_one_type(v)) for c, v in data.items()})
    spare = out / f".{PARQUET_NAME}.partial"
    pyarrow.parquet.write_table(table, spare)
    os.replace(spare, out / PARQUET_NAME)
    return written + [out / PARQUET_NAME]


def _arrow_value(value: Any) -> Any:
    return format_value(value) if isinstance(value, (list, dict)) else value


def _one_type(values: list) -> list:
    """Parquet columns have one type: ints with floats become floats, else mixed -> text."""
    kinds = {type(v) for v in values}
    if kinds <= {int, float} and float in kinds:
        return [float(v) for v in values]
    if len(kinds) > 1:
        return [_cell(v) for v in values]
    return values


def read_results(out: Path) -> tuple[list[dict[str, Any]], dict]:
    """results.csv with typed cells (parameters as TOML literals), and sweep.json."""
    sidecar = read_sidecar(out)
    if sidecar is None or not (out / CSV_NAME).exists():
        raise FileNotFoundError(f"{out}: not a sweep directory (no {SIDECAR} or {CSV_NAME})")
    keys = list(sidecar["grid"])
    rows = []
    with open(out / CSV_NAME, newline="", encoding="utf-8") as handle:
        for cells in csv.DictReader(handle):
            row: dict[str, Any] = {"point": cells["point"]}
            row.update({key: parse_value(cells[key], key) for key in keys})
            row.update(replication=int(cells["replication"]), seed=int(cells["seed"]),
                       metric=cells["metric"], value=float(cells["value"]))
            rows.append(row)
    return rows, sidecar


def read_sidecar(out: Path) -> dict | None:
    path = out / SIDECAR
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def write_sidecar(out: Path, doc: dict) -> None:
    _atomic_write(out / SIDECAR, (json.dumps(doc, indent=2) + "\n").encode())
