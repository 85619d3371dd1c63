"""`calibrate`: measure this machine and engine, and derive the model's costs.

Calibration plays its own small workload, never the scenario being predicted:
pulls of single-layer images of known size and compressibility over an
unshaped loopback link (to separate per-request, per-layer and per-byte
costs), a series of cached `run`s of `true` (container costs and the cost of
an API call) and one `rmi`.  It also times how fast a sync writes fresh files
to disk (what dockerd's unmounts wait for, model/pagecache.py) and, on a kernel
network, a tiny pull that shows the round trips spent opening TCP connections
(harness/calibrate_tcp.py).  Each cost is read off the measured phases with
the same arithmetic the model uses to put them back together (model/client.py
and model/pull.py), so the model reproduces the calibration workload.

How an engine's phases are timed decides the arithmetic: docksim's daemon
times its own work (create, start, ... exclude the API round trip), while for
the real dockerd they are timed around the client's calls (they include one).
"""
from __future__ import annotations

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

WARM_RUNS = 10
# The cached runs: a fresh daemon's first runs, soon after a pull, as a measured
# scenario's are (each replication starts a fresh daemon).  Later in a daemon's
# life starts get slower (README, "Where the model is still wrong").  Five
# replications spread the samples over five daemons and half a minute, because
# this VM's container operations drift by 20 % from one second to the next.
WARM_REQUEST = "s1-c0-r"
RMI_REQUEST = "s5-"  # the rmi step's requests
BASE_COMPRESSION = 2.0
SDK_RUN_CALLS = 7  # create, inspect, start, logs, inspect, wait, delete (model/client.py)
CALIBRATION_TOML = f"""
[scenario]
name = "calibration"
description = "docksim's calibration workload: layer sizes and kinds, cached runs, one rmi."
replications = 5

[[image]]
ref = "calibration/base:1"
layers = [{{ name = "base", size_mb = 3.0, compression = {BASE_COMPRESSION} }}]

[[image]]
ref = "calibration/random-small:1"
layers = [{{ name = "base", size_mb = 3.0, compression = 2.0 }},
          {{ name = "random-small", size_mb = 10.0, compression = 1.0 }}]

[[image]]
ref = "calibration/random-large:1"
layers = [{{ name = "base", size_mb = 3.0, compression = 2.0 }},
          {{ name = "random-large", size_mb = 40.0, compression = 1.0 }}]

[[image]]
ref = "calibration/compressible:1"
layers = [{{ name = "base", size_mb = 3.0, compression = 2.0 }},
          {{ name = "compressible", size_mb = 40.0, compression = 4.0 }}]

[[step]]
command = "pull"
image = "calibration/base:1"

[[step]]
at_s = 0.5
command = "run"
image = "calibration/base:1"
repeat = {WARM_RUNS}

[[step]]
at_s = 1.5
command = "pull"
image = "calibration/random-small:1"

[[step]]
at_s = 2.5
command = "pull"
image = "calibration/random-large:1"

[[step]]
at_s = 4.0
command = "pull"
image = "calibration/compressible:1"

[[step]]
at_s = 5.5
command = "rmi"
image = "calibration/random-small:1"
"""


def calibration_scenario():
    return parse_scenario(CALIBRATION_TOML, "<calibration>")


def median_duration(rows: list[PhaseRow], keep: Callable[[PhaseRow], bool]) -> float:
    """The median duration of the rows `keep` picks; ValueError when there are none."""
    values = [r.duration_s for r in rows if keep(r)]
    if not values:
        raise ValueError("calibration: a phase it needs was not measured")
    return statistics.median(values)


def derive_costs(rows: list[PhaseRow], engine: str, sizes: dict[str, int]) -> Costs:
    """Costs read off the calibration workload's trace (see the module docstring)."""
    def phase(name: str, layer: str = "", request_prefix: str = "") -> float:
        return median_duration(rows, lambda r: r.phase == name and r.layer == layer
                       and r.request.startswith(request_prefix))

    registry_request_s = phase("resolve") / 3
    small, large = phase("extract", "random-small"), phase("extract", "random-large")
    random_Bps = (sizes["random-large"] - sizes["random-small"]) / max(large - small, 1e-6)
    fixed_s = max(0.0, small - sizes["random-small"] / random_Bps)
    rate4 = sizes["compressible"] / max(phase("extract", "compressible") - fixed_s, 1e-6)
    inverse = (4 / rate4 - 1 / random_Bps) / 3  # 1/R_comp from 1/r(4) = 1/Rc + (1/Rr - 1/Rc)/4
    compressible_Bps = 1 / inverse if inverse > 0 else 1e12
    link_Bps = sizes["random-large"] / max(phase("download", "random-large") - registry_request_s, 1e-6)

    extract_ends = {}
    for r in rows:
        if r.phase == "extract":
            key = (r.replication, r.request)
            extract_ends[key] = max(extract_ends.get(key, 0.0), r.end_s)
    pull_fixed_s = statistics.median(
        max(0.0, r.end_s - extract_ends[(r.replication, r.request)]) for r in rows
        if r.phase == "pull" and (r.replication, r.request) in extract_ends)

    # every cached run but the first, which waits for the base pull's write-back
    # on dockerd (model/pagecache.py)
    warm_rows = [r for r in rows if r.request.startswith(WARM_REQUEST) and not r.request.endswith("-r0")]
    parts = {name: median_duration(warm_rows, lambda r, n=name: r.phase == n)
             for name in ("request", "create", "start", "run", "remove")}
    if engine == "launcher":
        # The daemon times its own work.  In the SDK's sequence the process's
        # exit overlaps the logs, inspect and wait calls, so
        #   total = 4a + create + start + remove + max(3a, exit)     (model/client.py)
        create_s, start_s, exit_s, remove_s = (parts[n] for n in ("create", "start", "run", "remove"))
        rest_s = parts["request"] - create_s - start_s - remove_s
        api_s = rest_s / SDK_RUN_CALLS
        if exit_s > 3 * api_s:
            api_s = (rest_s - exit_s) / 4
    else:
        # Timed around the client's calls: create, start and remove each hold one
        # round trip, `run` (start answered -> wait answered) is max(3a, exit),
        # and one inspect is not timed at all.
        api_s = parts["request"] - sum(parts[n] for n in ("create", "start", "run", "remove"))
        create_s, start_s, remove_s = (max(0.0, parts[n] - api_s) for n in ("create", "start", "remove"))
        exit_s = parts["run"]
    api_s = max(0.0, api_s)
    rmi_s = max(0.0, phase("request", request_prefix=RMI_REQUEST) - api_s)
    costs = Costs(api_call_s=api_s, registry_request_s=registry_request_s, unlimited_link_Bps=link_Bps,
                  extract_random_Bps=random_Bps, extract_compressible_Bps=compressible_Bps,
                  extract_fixed_s=fixed_s, pull_fixed_s=pull_fixed_s, create_s=create_s,
                  start_s=start_s, exit_s=exit_s, remove_s=remove_s, rmi_s=rmi_s,
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
    """Measure the calibration workload on `engine` and derive the costs; where this
    machine can build kernel networks, also the TCP connection set-up
    (harness/calibrate_tcp.py; otherwise it stays 0)."""
    from harness.calibrate_tcp import calibrate_tcp
    from harness.netns import why_unavailable
    scenario = calibration_scenario()
    rows = measure(scenario, progress=progress, engine=engine)
    sizes = {name: layer.size_bytes for name, layer in scenario.layers().items()}
    progress("disk write-back")
    flush_Bps, expire_s = measure_disk_flush()
    costs = derive_costs(rows, engine, sizes).with_(disk_flush_Bps=flush_Bps, dirty_expire_s=expire_s)
    if why_unavailable() is None:
        costs = calibrate_tcp(costs, engine, lambda message: progress(f"TCP set-up: {message}"))
    return costs
