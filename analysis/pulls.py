"""Picking one request out of a trace, and reading its pull layer by layer.

Pure functions over ``vocab.trace.PhaseRow`` lists, shared by the sequence,
Gantt, topology and animation charts; no drawing here.

A layer's ``download`` and ``extract`` rows belong to the request whose pull
*started* the transfer (see ``model/pull.py``; the engine does the same).  When
three clients pull one image at once, one of them owns the transfers and the
other two only wait for them.  ``pull_layer_rows`` therefore returns, for a
pull, its own layer rows plus those of the same image's transfers, on the same
node and replication, that finished while it waited: what the pull depended on.
"""
from __future__ import annotations

from dataclasses import dataclass

from analysis.select import by_request
from vocab.trace import PhaseRow

EPS_S = 1e-4   # two trace times this close are "the same moment"


def request_rows(rows: list[PhaseRow], request: str | None = None,
                 replication: int = 0, prefer: str = "cold run") -> tuple[str, list[PhaseRow]]:
    """(request id, its rows) of one replication.

    ``request`` names it; None picks by ``prefer``: ``"cold run"`` is the first
    ``run`` that pulled (else the first pull, else the first request);
    ``"downloads"`` is the first request whose rows hold a layer download.
    """
    groups = by_request(rows, replication)
    if not groups:
        raise ValueError(f"the trace has no rows in replication {replication}")
    if request is not None:
        if request not in groups:
            shown = ", ".join(list(groups)[:8])
            raise ValueError(f"request {request!r} is not in replication {replication} "
                             f"(present: {shown}{', ...' if len(groups) > 8 else ''})")
        return request, groups[request]

    def has(group, phase, command=None):
        return (any(r.phase == phase for r in group)
                and (command is None or group[0].command == command))
    tests = ([lambda g: has(g, "download")] if prefer == "downloads" else
             [lambda g: has(g, "pull", "run"), lambda g: has(g, "pull")])
    for test in tests + [lambda g: True]:
        for name, group in groups.items():
            if test(group):
                return name, group
    raise AssertionError("unreachable")


def phase_row(rows: list[PhaseRow], phase: str) -> PhaseRow | None:
    """The first row of a phase (by start time), or None."""
    found = [row for row in rows if row.phase == phase]
    return min(found, key=lambda r: r.start_s) if found else None


@dataclass(frozen=True)
class LayerRows:
    """One layer of a pull: its download and extract rows and who fetched it."""

    layer: str
    download: PhaseRow | None
    extract: PhaseRow | None
    owner: str            # the request whose pull fetched the layer

    @property
    def bytes(self) -> int:
        return (self.download.bytes or 0) if self.download else 0


def pull_layer_rows(rows: list[PhaseRow], request: str, replication: int = 0) -> list[LayerRows]:
    """The layers a request's pull fetched or waited for, bottom layer first.

    Bottom first is extraction order: a layer is extracted only after the one
    below it (``[daemon] extract = "serial"``, Docker's default).
    """
    mine = [r for r in rows if r.replication == replication and r.request == request]
    pull = phase_row(mine, "pull")
    if pull is None:
        return []
    node, image = mine[0].node, mine[0].image
    chosen = [r for r in mine if r.phase in ("download", "extract")]
    own_layers = {r.layer for r in chosen}
    for row in rows:
        if (row.replication == replication and row.node == node and row.image == image
                and row.request != request and row.phase in ("download", "extract")
                and row.layer not in own_layers
                and pull.start_s - EPS_S <= row.end_s <= pull.end_s + EPS_S):
            chosen.append(row)
    layers: dict[str, dict] = {}
    for row in chosen:
        entry = layers.setdefault(row.layer, {"owner": row.request})
        if row.phase not in entry or row.start_s < entry[row.phase].start_s:
            entry[row.phase] = row
    result = [LayerRows(name, e.get("download"), e.get("extract"), e["owner"])
              for name, e in layers.items()]

    def order(item: LayerRows) -> tuple:
        first = item.extract or item.download
        return (item.extract is None, first.start_s if first else 0.0, item.layer)
    return sorted(result, key=order)


def critical_path(resolve: PhaseRow | None, layers: list[LayerRows]) -> list[PhaseRow]:
    """The chain of rows that decided when the last layer was registered, in time order.

    Walk back from the extract that ended last.  An extract waited for its own
    download and for the extract of the layer below: whichever ended last
    decided it (an engine that extracts while the blob streams in still cannot
    finish before its last byte).  A download began either when the resolve
    ended or when another download freed its slot (``max-concurrent-downloads``):
    the latest of those to end before it began.
    """
    extracts = [item.extract for item in layers if item.extract]
    downloads = [item.download for item in layers if item.download]
    if not extracts and not downloads:
        return [resolve] if resolve else []
    below = {layers[i].layer: layers[i - 1].extract for i in range(1, len(layers))}
    own = {item.layer: item.download for item in layers}
    current = max(extracts or downloads, key=lambda r: (r.end_s, r.start_s))
    path = [current]
    while True:
        if current.phase == "extract":   # may stream while downloading: the later end decides
            options = [r for r in (own.get(current.layer), below.get(current.layer)) if r]
        elif current.phase == "download":
            options = [r for r in downloads + ([resolve] if resolve else [])
                       if r is not current and r.end_s <= current.start_s + EPS_S]
        else:
            break
        if not options:
            break
        current = max(options, key=lambda r: (r.end_s, r.phase == "resolve"))
        path.append(current)
    return path[::-1]
