"""`calibrate`: measure this machine and engine, and derive the model's costs.

Calibration plays small workloads of its own, never the scenario being
predicted: pulls of images whose one new layer has a known size and
compressibility, over an unshaped loopback link (to separate per-request,
per-layer and per-byte costs), and one `rmi`; and, in many short replications,
cached `run`s of `true`, one after another (container costs and the cost of an
API call) and then several of `sleep 1` at once (how container operations
share the machine); and pairs of pulls of one image at once (how long such
pulls wait for each other, harness/calibrate_ingest.py).  It also times how fast a sync
writes fresh files to disk (what dockerd's unmounts wait for,
model/pagecache.py) and, on a kernel network, a tiny pull that shows the
round trips spent opening TCP connections (harness/calibrate_tcp.py).  Each
cost is read off the measured phases with the same arithmetic the model uses
to put them back together (model/client.py and model/pull.py), so the model
reproduces the calibration workload.

How an engine's phases are timed decides the arithmetic: docksim's daemon
times its own work (create, start, ... exclude the API round trip), while for
the real dockerd they are timed around the client's calls (they include one).
"""
from __future__ import annotations

import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from harness.measure import measure
from model.costs import Costs
from vocab.scenario import parse_scenario
from vocab.trace import PhaseRow

# The cached runs: a fresh daemon's first runs, soon after a pull, as a measured
# scenario's are (each replication starts a fresh daemon).  Later in a daemon's
# life starts get slower (README, "Where the model is still wrong").  They have
# a workload of their own with many short replications, because on this VM a
# daemon's cached runs are up to 15 % faster or slower than the average for
# tens of seconds at a time (README, "Where the model is still wrong").  It is
# played before the pulls: played again after them, docksim's cached runs took
# 7 and 12 % longer in two trials, while a measured scenario's first runs find
# a machine that has not just unpacked 170 MB.
WARM_RUNS = 6
RUN_REPLICATIONS = 12
WARM_REQUEST = "s1-c0-r"
RUN_PHASES = ("request", "create", "start", "run", "remove")  # what a cached run's trace holds
# After the warm runs, this many runs sent at the same moment: how container
# operations share the machine (harness/calibrate_sharing.py).  Each container
# lives a second, so that the starts share the machine with one another only,
# as when a class starts containers together.  With `true`, the first exits and
# removes overlapped the last starts, and on dockerd six such runs took 0.37 s
# (median start-up) where six of `sleep 1` took 0.29-0.31 s in the same minutes.
CONCURRENT_RUNS = 6
CONCURRENT_REQUEST = "s2-"
CONCURRENT_RUN_S = 1.0
BASE_COMPRESSION = 2.0
# Incompressible layers from small to large: the extraction line (fixed cost per
# layer + bytes / rate) is a least-squares fit through all of them.  Two sizes
# were not enough: on dockerd the line through 10 and 40 MB overstated small
# layers' fixed cost by half and understated a 60 MB layer by a fifth.
RANDOM_LAYERS_MB = (2.0, 10.0, 40.0, 80.0)
COMPRESSIBLE = "compressible"
BASE_LAYER = f'{{ name = "base", size_mb = 3.0, compression = {BASE_COMPRESSION} }}'


def _random_layer(size_mb: float) -> str:
    return f"random-{size_mb:g}"


def _header(name: str, description: str, replications: int) -> str:
    return (f'[scenario]\nname = "{name}"\ndescription = "{description}"\n'
            f"replications = {replications}\n")


def _step(at_s: float, command: str, image: str, extra: str = "") -> str:
    return (f'\n[[step]]\nat_s = {at_s:g}\ncommand = "{command}"\n'
            f'image = "calibration/{image}:1"\n{extra}')


def _image(name: str, layer: tuple[float, float] | None = None) -> str:
    """calibration/NAME:1: the base layer and, on it, a layer NAME of
    `layer` = (size_mb, compression), if given."""
    on_top = (f', {{ name = "{name}", size_mb = {layer[0]}, compression = {layer[1]} }}'
              if layer else "")
    return f'\n[[image]]\nref = "calibration/{name}:1"\nlayers = [{BASE_LAYER}{on_top}]\n'


def _pulls_toml() -> str:
    """Pull the base, then one image per random layer size and one compressible
    image (each on the base, so only its own layer is unpacked), then remove one
    image.  The pulls are spaced so that none overlaps another on the slowest
    engine here (dockerd)."""
    new_layers = {**{_random_layer(mb): (mb, 1.0) for mb in RANDOM_LAYERS_MB},
                  COMPRESSIBLE: (40.0, 4.0)}
    images = _image("base") + "".join(_image(name, layer) for name, layer in new_layers.items())
    steps, at_s = [_step(0.0, "pull", "base")], 0.5
    for name, (size_mb, _) in new_layers.items():
        steps.append(_step(at_s, "pull", name))
        # 60 MB a second: about half the rate at which dockerd fetches and unpacks here
        at_s = round(at_s + 0.5 + size_mb / 60, 1)
    steps.append(_step(at_s, "rmi", _random_layer(RANDOM_LAYERS_MB[1])))
    return (_header("calibration", "docksim's calibration: layer sizes and kinds, one rmi.", 4)
            + images + "".join(steps))


def _runs_toml(replications: int) -> str:
    return (_header("calibration-runs", "docksim's calibration: cached runs of a small image.",
                    replications)
            + _image("base")
            + _step(0.0, "pull", "base") + _step(0.5, "run", "base", f"repeat = {WARM_RUNS}\n")
            + _step(2.0, "run", "base", f"clients = {CONCURRENT_RUNS}\nrun_s = {CONCURRENT_RUN_S}\n"))


PULLS_TOML = _pulls_toml()
RMI_REQUEST = f"s{PULLS_TOML.count('[[step]]') - 1}-"  # the last step's requests


def runs_scenario(replications: int = RUN_REPLICATIONS):
    """The cached-runs workload, with `replications` fresh daemons."""
    return parse_scenario(_runs_toml(replications), "<calibration-runs>")


def calibration_scenarios():
    """The two calibration workloads: (pulls, cached runs)."""
    return parse_scenario(PULLS_TOML, "<calibration>"), runs_scenario()


def median_duration(rows: list[PhaseRow], keep: Callable[[PhaseRow], bool]) -> float:
    """The median duration of the rows `keep` picks; ValueError when there are none."""
    values = [r.duration_s for r in rows if keep(r)]
    if not values:
        raise ValueError("calibration: a phase it needs was not measured")
    return statistics.median(values)


def solve_monotone(value_of: Callable[[float], float], target: float, low: float, high: float,
                   increasing: bool = True, log_scale: bool = False, steps: int = 40) -> float:
    """The x in [low, high] at which the monotone `value_of(x)` (the model's
    prediction of a calibration workload, as one cost varies) meets `target`
    (the measured value), by bisection -- on a log scale if asked -- rounded to
    4 decimals.  `low` when the prediction already meets or passes it there,
    `high` when it does not get past it even there."""
    direction = 1.0 if increasing else -1.0

    def past(x: float) -> float:  # > 0: beyond the target, < 0: short of it
        return direction * (value_of(x) - target)

    if past(low) >= 0:
        return low
    if past(high) <= 0:
        return high
    to_scale, from_scale = (math.log, math.exp) if log_scale else (float, float)
    a, b = to_scale(low), to_scale(high)
    for _ in range(steps):
        middle = (a + b) / 2
        if past(from_scale(middle)) < 0:
            a = middle
        else:
            b = middle
    return round(from_scale((a + b) / 2), 4)


def extraction_line(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(fixed_s, Bps) of the least-squares line seconds = fixed_s + bytes / Bps
    through (layer bytes, extraction seconds); fixed_s is clamped at 0."""
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx
    slope = max(slope, 1e-12)  # extraction never gets faster with size
    return max(0.0, mean_y - slope * mean_x), 1 / slope


def container_costs(run_rows: list[PhaseRow], engine: str) -> dict[str, float]:
    """api_call_s, create_s, start_s, start_answer_s, exit_s and remove_s, read
    off the trace of the cached-runs workload."""
    # every cached run but the first, which waits for the base pull's write-back
    # on dockerd (model/pagecache.py)
    warm_rows = [r for r in run_rows
                 if r.request.startswith(WARM_REQUEST) and not r.request.endswith("-r0")]
    parts = {name: median_duration(warm_rows, lambda r, n=name: r.phase == n)
             for name in RUN_PHASES}
    answer_s = 0.0
    if engine == "launcher":
        # The daemon times its own work.  Up to the exec the client makes two and
        # a half calls' worth of round trips (create's way in and out, inspect,
        # start's way in); after it, the start call's answer waits for the
        # daemon's own `answer` work, and the process's exit overlaps the logs,
        # inspect and wait calls, so              (model/client.py, model/daemon.py)
        #   total = 4a + create + start + remove + max(3a + answer, exit)
        # Read off the whole request alone, `a` took in the start's answer work
        # and put a cached run's exec about 1 ms (6-9 %) late.
        create_s, start_s, exit_s, remove_s = (parts[n] for n in ("create", "start", "run", "remove"))
        api_s = _median_per_run(warm_rows, lambda p: p["start"].end_s - p["request"].start_s
                                - p["create"].duration_s - p["start"].duration_s) / 2.5
        after_calls_s = parts["request"] - 4 * api_s - create_s - start_s - remove_s
        if after_calls_s > exit_s:  # the wait found the process gone
            answer_s = max(0.0, after_calls_s - 3 * api_s)
    else:
        # Timed around the client's calls: create, start and remove each hold one
        # round trip, `run` (start answered -> wait answered) is max(3a, exit),
        # and one inspect is not timed at all.  Taken run by run: as a difference
        # of medians (a request's and its phases'), one daemon's five runs gave
        # anywhere from -0.9 to 5.1 ms; run by run, 1.1 to 1.8 ms.
        api_s = _median_per_run(warm_rows, lambda p: p["request"].duration_s - sum(
            p[n].duration_s for n in ("create", "start", "run", "remove")))
        create_s, start_s, remove_s = (max(0.0, parts[n] - api_s) for n in ("create", "start", "remove"))
        exit_s = parts["run"]
    return {"api_call_s": max(0.0, api_s), "create_s": create_s, "start_s": start_s,
            "start_answer_s": answer_s, "exit_s": exit_s, "remove_s": remove_s}


def _median_per_run(rows: list[PhaseRow], value: Callable[[dict[str, PhaseRow]], float]) -> float:
    """The median over the runs in `rows` of `value(phases)`, phases being one
    run's rows by phase name; runs missing one of RUN_PHASES are left out."""
    runs: dict[tuple, dict[str, PhaseRow]] = {}
    for row in rows:
        runs.setdefault((row.replication, row.node, row.request), {})[row.phase] = row
    values = [value(phases) for phases in runs.values() if all(n in phases for n in RUN_PHASES)]
    if not values:
        raise ValueError("calibration: a phase it needs was not measured")
    return statistics.median(values)


def derive_costs(rows: list[PhaseRow], run_rows: list[PhaseRow], engine: str,
                 sizes: dict[str, int]) -> Costs:
    """Costs read off the traces of the calibration's pulls (`rows`) and cached
    runs (`run_rows`); see the module docstring."""
    def phase(name: str, layer: str = "", request_prefix: str = "") -> float:
        return median_duration(rows, lambda r: r.phase == name and r.layer == layer
                       and r.request.startswith(request_prefix))

    registry_request_s = phase("resolve") / 3
    random = [_random_layer(mb) for mb in RANDOM_LAYERS_MB]
    fixed_s, random_Bps = extraction_line([(sizes[name], phase("extract", name)) for name in random])
    rate4 = sizes[COMPRESSIBLE] / max(phase("extract", COMPRESSIBLE) - fixed_s, 1e-6)
    inverse = (4 / rate4 - 1 / random_Bps) / 3  # 1/R_comp from 1/r(4) = 1/Rc + (1/Rr - 1/Rc)/4
    compressible_Bps = 1 / inverse if inverse > 0 else 1e12
    largest = random[-1]
    link_Bps = sizes[largest] / max(phase("download", largest) - registry_request_s, 1e-6)

    extract_ends = {}
    for r in rows:
        if r.phase == "extract":
            key = (r.replication, r.request)
            extract_ends[key] = max(extract_ends.get(key, 0.0), r.end_s)
    pull_fixed_s = statistics.median(
        max(0.0, r.end_s - extract_ends[(r.replication, r.request)]) for r in rows
        if r.phase == "pull" and (r.replication, r.request) in extract_ends)

    container = container_costs(run_rows, engine)
    rmi_s = max(0.0, phase("request", request_prefix=RMI_REQUEST) - container["api_call_s"])
    costs = Costs(**container, registry_request_s=registry_request_s, unlimited_link_Bps=link_Bps,
                  extract_random_Bps=random_Bps, extract_compressible_Bps=compressible_Bps,
                  extract_fixed_s=fixed_s, pull_fixed_s=pull_fixed_s, rmi_s=rmi_s,
                  extract_streams=1.0 if engine == "launcher" else 0.0,
                  unmount_flushes=0.0 if engine == "launcher" else 1.0,
                  phases_include_call=0.0 if engine == "launcher" else 1.0)
    # The base layer is the only bottom layer: what it takes beyond filler of its
    # size and compression is its userland's unpacking.  (Its blob arrives long
    # before it is unpacked, so on a streaming engine, too, the phase is all work.)
    base_s = costs.extract_s(sizes["base"], BASE_COMPRESSION)
    return costs.with_(userland_extract_s=max(0.0, phase("extract", "base") - base_s))


FLUSH_PROBE_MB = 32
FLUSH_PROBE_RUNS = 3


def measure_disk_flush(directory: str | None = None) -> tuple[float, float]:
    """This machine's disk as a pull leaves it: the rate at which a sync writes
    freshly written file data back (bytes/s), and the age at which the kernel
    writes dirty data back by itself (vm.dirty_expire_centisecs, in seconds).

    Writes FLUSH_PROBE_MB of incompressible files where measurements keep their
    stores (the temp directory) and times sync(2), minus an idle sync's time;
    the median of FLUSH_PROBE_RUNS."""
    chunk = os.urandom(1 << 20)
    probe = Path(tempfile.mkdtemp(prefix="docksim-flush-", dir=directory))
    rates = []
    try:
        for run in range(FLUSH_PROBE_RUNS):
            os.sync()
            began = time.perf_counter()
            os.sync()
            idle_s = time.perf_counter() - began
            for i in range(FLUSH_PROBE_MB):
                (probe / f"{run}-{i}").write_bytes(chunk)
            began = time.perf_counter()
            os.sync()
            rates.append(FLUSH_PROBE_MB * len(chunk) / max(time.perf_counter() - began - idle_s, 1e-6))
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    try:
        expire_s = int(Path("/proc/sys/vm/dirty_expire_centisecs").read_text()) / 100
    except (OSError, ValueError):
        expire_s = Costs.dirty_expire_s
    return statistics.median(rates), expire_s


def calibrate(engine: str = "launcher", progress=lambda message: None) -> Costs:
    """Measure the calibration workload on `engine` and derive the costs, with how
    container operations share the machine (harness/calibrate_sharing.py) and
    how pulls of one image wait for each other (harness/calibrate_ingest.py); where
    this machine can build kernel networks, also the TCP connection set-up
    (harness/calibrate_tcp.py; otherwise it stays 0)."""
    from harness.calibrate_ingest import calibrate_manifest_wait
    from harness.calibrate_sharing import fit_parallelism
    from harness.calibrate_tcp import calibrate_tcp
    from harness.netns import why_unavailable
    pulls, runs = calibration_scenarios()
    run_rows = measure(runs, progress=lambda m: progress(f"cached runs: {m}"), engine=engine)
    rows = measure(pulls, progress=lambda m: progress(f"pulls: {m}"), engine=engine)
    progress("disk write-back")
    flush_Bps, expire_s = measure_disk_flush()
    costs = derive_costs(rows, run_rows, engine, pulls.layer_bytes()).with_(
        disk_flush_Bps=flush_Bps, dirty_expire_s=expire_s)
    costs = costs.with_(container_parallelism=fit_parallelism(run_rows, costs))
    costs = calibrate_manifest_wait(costs, engine, lambda message: progress(f"paired pulls: {message}"))
    if why_unavailable() is None:
        costs = calibrate_tcp(costs, engine, lambda message: progress(f"TCP set-up: {message}"))
    return costs
