"""Every chart kind drawn from a result directory, for ``simulate.py chart`` and notebooks.

``KINDS[name](trace_dir, options)`` returns a matplotlib Figure (save it with
``analysis.style.save_figure``); ``animation`` writes its GIF to
``options["out"]`` and returns the path.  ``trace_dir`` is what ``run`` or
``measure`` wrote (``trace.csv`` + ``summary.json``), or what ``compare``
wrote (``sim/`` and ``real/``, and ``docker/`` if present).

Options (all optional; strings are converted, so a CLI can pass them as is):

==============  ==================================================================
``request``     sequence, gantt: the request id, e.g. ``s0-c1-r0`` (default: the first cold run)
``replication`` every kind: which replication (default 0; cdf: all of them)
``source``      sequence, gantt, topology, animation: ``sim`` | ``real`` | ``docker``
``real``        a measured trace directory to add (breakdown, comparison, cdf)
``docker``      a trace directory measured with ``--engine docker`` (comparison, cdf)
``with``        cdf: more trace directories, comma-separated
``metric``      cdf: ``startup_s`` (default; ``total_s`` when nothing ran), ``total_s``, ``pull_s``
``at_s``        topology: a moment; links then show the flows in flight
``normalise``   breakdown: ``auto`` (default), ``yes`` or ``no``
``scenario``    topology, animation: the scenario file (default: the one in summary.json)
``frames``      animation: frame count (default 48, at most 60); ``fps`` (default 8)
``out``         animation: the GIF to write
``title``       every kind: the title ("" for none)
==============  ==================================================================
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from vocab.schema import ScenarioError
from vocab.trace import PhaseRow, read_csv, request_metrics

PROJECT = Path(__file__).resolve().parent.parent
ROLE_NAMES = {"sim": "model", "real": "docksim", "docker": "Docker"}


def _role(summary: dict) -> str:
    if summary.get("engine") == "docker":
        return "docker"
    return "sim" if summary.get("source", "sim") == "sim" else "real"


def _read(directory: Path) -> tuple[list[PhaseRow], dict]:
    csv = directory / "trace.csv"
    if not csv.exists():
        raise FileNotFoundError(f"{directory}: no trace.csv (run `simulate.py run` or `compare`)")
    summary_path = directory / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.exists() else {}
    return read_csv(csv), summary


def load_traces(trace_dir: str | Path, options: dict | None = None) -> dict[str, tuple[list, dict]]:
    """role ("sim" | "real" | "docker") -> (rows, summary) from the directory and the options."""
    trace_dir, options = Path(trace_dir), options or {}
    found: dict[str, tuple[list, dict]] = {}
    if (trace_dir / "trace.csv").exists():
        rows, summary = _read(trace_dir)
        found[_role(summary)] = (rows, summary)
    else:
        for sub in ("sim", "real", "docker"):
            if (trace_dir / sub / "trace.csv").exists():
                rows, summary = _read(trace_dir / sub)
                found.setdefault(_role(summary), (rows, summary))
    for role in ("real", "docker"):
        if options.get(role):
            found[role] = _read(Path(options[role]))
    if not found:
        raise FileNotFoundError(f"{trace_dir}: no trace.csv, nor sim/ or real/ beside each other")
    return found


def _one(trace_dir, options) -> tuple[list[PhaseRow], dict]:
    traces = load_traces(trace_dir, options)
    wanted = options.get("source")
    if wanted:
        if wanted not in traces:
            raise ValueError(f"source {wanted!r}: not in {trace_dir} "
                             f"(present: {', '.join(traces)})")
        return traces[wanted]
    return next(traces[r] for r in ("sim", "real", "docker") if r in traces)


def _int(options, key, default):
    value = options.get(key)
    return default if value in (None, "") else int(value)


def _title(options):
    return options.get("title")


def scenario_of(summary: dict, options: dict):
    """The Scenario: ``options["scenario"]``, else the file named in summary.json."""
    from vocab.scenario import load_scenario
    name = options.get("scenario") or summary.get("meta", {}).get("scenario_file")
    if not name:
        raise ValueError("no scenario: give the scenario option (summary.json names none)")
    path = Path(name)
    if not path.exists() and (PROJECT / path).exists():
        path = PROJECT / path
    return load_scenario(path)


def sequence(trace_dir, options):
    """Lifelines of client, daemon, registry, runtime; one request's calls as arrows."""
    from analysis.sequence_chart import sequence_figure
    rows, summary = _one(trace_dir, options)
    auth = options.get("auth")
    if auth is None:
        try:
            auth = getattr(scenario_of(summary, options).registry, "auth", "none")
        except (ValueError, OSError, ScenarioError):   # the chart still works without the file
            auth = "none"
    return sequence_figure(rows, options.get("request"), _int(options, "replication", 0),
                           _title(options), auth=auth)


def gantt(trace_dir, options):
    """One request's pull per layer (download, extract), critical path highlighted."""
    from analysis.gantt_chart import gantt_figure
    rows, _ = _one(trace_dir, options)
    return gantt_figure(rows, options.get("request"), _int(options, "replication", 0),
                        _title(options))


def topology(trace_dir, options):
    """The scenario's world as a graph, links labelled with speeds and coloured by load."""
    from analysis.topology_chart import topology_figure
    rows, summary = _one(trace_dir, options)
    at_s = options.get("at_s")
    return topology_figure(scenario_of(summary, options), rows, _int(options, "replication", 0),
                           None if at_s in (None, "") else float(at_s), _title(options))


def cdf(trace_dir, options):
    """CDF of startup_s (or total_s) over requests, one line per trace."""
    from analysis.cdf_chart import cdf_figure
    traces = []
    extra = options.get("with") or []
    extra = [e for e in (extra.split(",") if isinstance(extra, str) else extra) if e]
    for directory in [trace_dir, *extra]:
        for role, (rows, summary) in load_traces(directory, options if directory == trace_dir
                                                 else {}).items():
            label = f"{summary.get('scenario', Path(directory).name)} \u00b7 {ROLE_NAMES[role]}"
            traces.append((label, rows))
    replication = options.get("replication")
    metric = options.get("metric")
    if not metric:   # startup_s, unless no request started a container (pulls only)
        metric = "startup_s" if any(entry["startup_s"] is not None for _, rows in traces
                                    for entry in request_metrics(rows).values()) else "total_s"
    return cdf_figure(traces, metric,
                      None if replication in (None, "") else int(replication), _title(options))


def breakdown(trace_dir, options):
    """Stacked phases per request; model and measurement side by side when both are there."""
    from analysis.breakdown_chart import breakdown_figure
    traces = load_traces(trace_dir, options)
    first = next(traces[r][0] for r in ("sim", "real", "docker") if r in traces)
    second = traces["real"][0] if "sim" in traces and "real" in traces else None
    flag = str(options.get("normalise", "auto")).lower()
    normalise = None if flag == "auto" else flag in ("1", "yes", "true", "on")
    return breakdown_figure(first, second, _int(options, "replication", 0),
                            normalise=normalise, title=_title(options))


def comparison(trace_dir, options):
    """Model vs measurement per request and phase; with a Docker trace, three bars each."""
    from analysis.comparison_chart import comparison_figure
    traces = load_traces(trace_dir, options)
    if "sim" not in traces or len(traces) < 2:
        raise ValueError(f"{trace_dir}: comparison needs a simulated and a measured trace "
                         "(a `compare` directory, or the real= / docker= options)")
    sim = traces["sim"][0]
    real = traces.get("real", ([], {}))[0]
    docker = traces.get("docker", ([], {}))[0]
    if real and not docker:
        return comparison_figure(sim, real, _title(options), _int(options, "replication", 0))
    return comparison_figure(sim, real, _title(options), _int(options, "replication", 0),
                             docker_rows=docker)


def animation(trace_dir, options) -> Path:
    """A GIF of a pull moving across the topology; writes ``options["out"]``, returns its path."""
    from analysis.animation import animate_pull
    if not options.get("out"):
        raise ValueError("animation: give out (the GIF to write)")
    rows, summary = _one(trace_dir, options)
    return animate_pull(scenario_of(summary, options), rows, options["out"],
                        _int(options, "replication", 0), _int(options, "frames", 48),
                        _int(options, "fps", 8), _title(options))


KINDS: dict[str, Callable[[Path, dict], object]] = {
    "sequence": sequence, "gantt": gantt, "topology": topology, "cdf": cdf,
    "breakdown": breakdown, "comparison": comparison, "animation": animation,
}
HELP = {   # one line each, for `simulate.py chart --help`
    "sequence": "one request's API calls and registry requests, timed (--opt request=ID)",
    "gantt": "one request's pull per layer, critical path highlighted",
    "topology": "the scenario's world, links labelled with speeds, coloured by load",
    "cdf": "CDF of startup_s (or total_s) over requests, one line per trace",
    "breakdown": "stacked phases per request, model and measurement side by side",
    "comparison": "model vs measurement per phase; with --opt docker=DIR, vs Docker too",
    "animation": "a GIF of a pull moving across the topology (--out FILE.gif)",
}
WRITES_FILE = ("animation",)   # these write their own file instead of returning a Figure
