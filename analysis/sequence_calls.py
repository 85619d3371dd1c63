"""The calls behind one request: which arrows a sequence diagram draws, and when.

A trace holds phases, not calls.  This module derives the Engine API calls and
the registry's HTTP requests of one request from its phases and the known call
sequence of each command; the same derivation serves a simulated and a
measured trace.  Drawn by ``analysis.sequence_chart``.

* The calls of each command are the Docker SDK's sequence (``model/client.py``):
  ``run`` is [``POST /containers/create`` -> 404, ``POST /images/create``,
  ``GET /images/{ref}/json``] when it pulled, then create, inspect, start,
  logs, inspect, wait, delete; ``pull`` is ``POST /images/create`` and
  ``GET /images/{ref}/json``; ``rmi`` is ``DELETE /images/{ref}``.
* A call with a phase arrives when the phase starts and is answered when it
  ends (``pull`` for ``POST /images/create``, ``create``, ``start``,
  ``remove``); ``wait`` is answered when the ``run`` phase ends, or at once if
  the process had already exited.
* Every other moment is a crossing of the daemon's unix socket.  Between two
  known moments the crossings share the time equally: exact for the model,
  whose crossings all cost half of ``api_call_s``, as long as its start
  answers at the exec (``start_answer_s`` 0; else that wait is shared out
  too); an estimate for a measured trace, whose client only times the whole
  request.
* The ``resolve`` phase is split equally into its registry round trips
  (``GET /v2/``, the manifest, the config blob; one more for a token with
  ``auth = "token"``), each request taking the first half of its round trip.
* A layer blob's GET is sent when its ``download`` starts; its first byte comes
  back half a round trip later and its last when the download ends.  Layers
  fetched by another request's pull (concurrent pulls of one image share
  transfers) are included and named by their owner.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from analysis.pulls import phase_row, pull_layer_rows, request_rows
from analysis.style import format_duration
from vocab.trace import PhaseRow


@dataclass(frozen=True)
class Message:
    """One arrow: an API call, its answer, an HTTP request or a blob streaming back."""

    sender: str
    receiver: str
    label: str
    send_s: float
    recv_s: float
    kind: str           # "call" | "answer" | "http" | "http-answer" | "blob" | "runtime"
    note: str = ""      # short text at the arrow's end (a status code, a size)
    bytes: int = 0      # a blob's size on the wire


@dataclass(frozen=True)
class Activation:
    """A phase as a box on a lifeline."""

    lifeline: str
    phase: str
    start_s: float
    end_s: float
    label: str = ""


@dataclass
class _Point:
    anchor: float | None = None
    hold: float | None = None   # answered no earlier than this (wait: the process exit)


_Call = tuple[str, str, "PhaseRow | None", "float | None"]   # label, answer, phase, hold


def _calls(command: str, ref: str, rows: list[PhaseRow]) -> list[_Call]:
    """(label, answer, phase row, hold) per Engine API call of one command.

    A run whose pull failed stops after it: the SDK raises (no create row).
    """
    p = {phase: phase_row(rows, phase) for phase in ("pull", "create", "start", "run", "remove")}
    if command == "pull":
        return [("POST /images/create (the pull)", "200", p["pull"], None),
                (f"GET /images/{ref}/json", "200", None, None)]
    if command == "rmi":
        return [(f"DELETE /images/{ref}", "200", None, None)]
    calls = []
    if p["pull"] is not None:
        calls += [("POST /containers/create", "404 no such image", None, None),
                  ("POST /images/create (the pull)", "200", p["pull"], None),
                  (f"GET /images/{ref}/json", "200", None, None)]
        if p["create"] is None:
            return calls[:2]
    run_end = p["run"].end_s if p["run"] else None
    return calls + [("POST /containers/create", "201 created", p["create"], None),
                    ("GET /containers/{id}/json", "200", None, None),
                    ("POST /containers/{id}/start", "204", p["start"], None),
                    ("GET /containers/{id}/logs", "200", None, None),
                    ("GET /containers/{id}/json", "200", None, None),
                    ("POST /containers/{id}/wait", "200 exit 0", None, run_end),
                    ("DELETE /containers/{id}", "204", p["remove"], None)]


def _solve(points: list[_Point], steps: list[int]) -> list[float]:
    """Times of the chain's points: anchors stay, half trips share the gaps equally."""
    anchors = [i for i, p in enumerate(points) if p.anchor is not None]
    estimates = []
    for a, b in zip(anchors, anchors[1:]):
        n = sum(steps[a + 1:b + 1])
        if n and not any(points[k].hold is not None for k in range(a + 1, b)):
            estimates.append((points[b].anchor - points[a].anchor) / n)
    half = statistics.median(estimates) if estimates else 0.0
    times = [0.0] * len(points)

    def spread(a: int, b: int, t_a: float, t_b: float) -> None:
        n = sum(steps[a + 1:b + 1])
        done = 0
        for i in range(a + 1, b):
            done += steps[i]
            times[i] = t_a + (t_b - t_a) * done / n if n else t_a

    for a, b in zip(anchors, anchors[1:]):
        t_a, t_b = points[a].anchor, max(points[b].anchor, points[a].anchor)
        times[a], times[b] = t_a, t_b
        holds = [k for k in range(a + 1, b) if points[k].hold is not None]
        if not holds:
            spread(a, b, t_a, t_b)
            continue
        k = holds[0]
        after = sum(steps[k + 1:b + 1])
        arrive = min(t_a + half * sum(steps[a + 1:k + 1]), t_b - half * after)
        times[k] = min(max(arrive, points[k].hold), t_b)
        spread(a, k, t_a, max(min(arrive, times[k]), t_a))
        spread(k, b, times[k], t_b)
    return times


def _api_messages(rows: list[PhaseRow], request_row: PhaseRow) -> list[Message]:
    calls = _calls(rows[0].command, rows[0].image, rows)
    points, steps = [_Point(anchor=request_row.start_s)], [0]
    for _, _, work, hold in calls:
        points.append(_Point(anchor=work.start_s if work else None))     # arrives
        steps.append(1)
        points.append(_Point(anchor=work.end_s if work else None, hold=hold))  # answered
        steps.append(0)
        points.append(_Point())                                          # back at the client
        steps.append(1)
    points[-1].anchor = request_row.end_s
    times = _solve(points, steps)
    messages = []
    for i, (label, answer, _, _) in enumerate(calls):
        send, recv, ans, back = times[3 * i:3 * i + 4]
        messages.append(Message("client", "daemon", label, send, recv, "call"))
        messages.append(Message("daemon", "client", "", ans, back, "answer", answer))
    return messages


def _registry_messages(rows: list[PhaseRow], mine: list[PhaseRow], request: str,
                       replication: int, auth: str) -> list[Message]:
    resolve = phase_row(mine, "resolve")
    if resolve is None:
        return []
    repository, tag = mine[0].image.rsplit(":", 1)
    manifest = f"GET /v2/{repository}/manifests/{tag}"
    if len(manifest) > 34:
        manifest = f"GET /v2/\u2026/manifests/{tag}"
    asks = ["GET /v2/", manifest, "GET blob config"]
    if auth == "token":
        asks[1:1] = ["GET token (auth)"]
    round_trip = resolve.duration_s / len(asks)
    messages = []
    for i, label in enumerate(asks):
        t = resolve.start_s + i * round_trip
        messages.append(Message("daemon", "registry", label, t, t + round_trip / 2, "http"))
        messages.append(Message("registry", "daemon", "", t + round_trip / 2, t + round_trip,
                                "http-answer"))
    for item in pull_layer_rows(rows, request, replication):
        download = item.download
        if download is None:
            continue
        shared = "" if item.owner == request else f" (for {item.owner})"
        first = min(download.start_s + round_trip / 2, download.end_s)
        messages.append(Message("daemon", "registry", f"GET blob {item.layer}{shared}",
                                download.start_s, first, "http"))
        messages.append(Message("registry", "daemon", "", first, download.end_s, "blob",
                                f"{item.layer} {item.bytes / 1e6:.1f} MB", item.bytes))
    return messages


def derive_sequence(rows: list[PhaseRow], request: str | None = None, replication: int = 0,
                    *, auth: str = "none") -> tuple[str, list[Message], list[Activation]]:
    """The messages and phase boxes of one request (see the module docstring).

    Returns (request id, messages in send order, activations).
    """
    request, mine = request_rows(rows, request, replication)
    request_row = phase_row(mine, "request")
    if request_row is None:
        raise ValueError(f"request {request} has no 'request' row")
    messages = _api_messages(mine, request_row)
    messages += _registry_messages(rows, mine, request, replication, auth)
    boxes = []
    for row in mine:
        if row.phase in ("pull", "create", "remove", "resolve"):
            boxes.append(Activation("daemon", row.phase, row.start_s, row.end_s,
                                    f"{row.phase} {format_duration(row.duration_s)}"))
        elif row.phase in ("start", "run"):
            boxes.append(Activation("runtime", row.phase, row.start_s, row.end_s,
                                    f"{row.phase} {format_duration(row.duration_s)}"))
    for item in pull_layer_rows(rows, request, replication):
        if item.extract:
            took = format_duration(item.extract.duration_s)
            boxes.append(Activation("daemon", "extract", item.extract.start_s, item.extract.end_s,
                                    f"extract {item.layer} {took}"))
    start, run = phase_row(mine, "start"), phase_row(mine, "run")
    if start is not None:
        messages.append(Message("daemon", "runtime", "start: namespaces, mounts, exec",
                                start.start_s, start.start_s, "runtime"))
        messages.append(Message("runtime", "daemon", "", start.end_s, start.end_s, "runtime",
                                "exec'd"))
    if run is not None:
        messages.append(Message("runtime", "daemon", "", run.end_s, run.end_s, "runtime", "exit"))
    messages.sort(key=lambda m: (m.send_s, m.recv_s))
    return request, messages, boxes
