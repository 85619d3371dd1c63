"""Calibration's kernel-network part: the rate of an unshaped kernel link, the
round trips an engine spends opening TCP connections, and the round trips a
transfer loses when it outgrows slow start.

An unshaped link on a kernel network is veth pairs and a bridge with offloads
off (wire-sized frames), much slower than loopback: a 20 MB layer pulled with
no round trip to wait for gives `kernel_link_Bps`.

On the emulated link (the registry delays its answers; the bytes cross
loopback) opening a connection is free, so the main calibration workload
cannot see it.  On a real network every new connection costs TCP's handshake,
one round trip, and an engine may open several: docksim's daemon opens one to
resolve and one per blob; dockerd pings `/v2/` on a connection of its own and
reuses idle ones.  How many is the engine's behaviour, so it is measured, not
assumed: a tiny image (blobs smaller than TCP's initial window, so slow start
adds no rounds of its own) is pulled over a kernel network with a long round
trip and no bandwidth limit (after its bottom layer, which carries the
userland), and the model is inverted:

    resolve:  tcp_setup_rtts_resolve = (measured resolve - model's) / RTT
    pull:     tcp_setup_rtts_blob    = (measured pull - model's) / RTT

with the model's pull computed after the resolve's round trips are known
(the layers' connections open in parallel, so one blob's set-up shows).

The round trips lost leaving slow start (model/tcp.py) come from a layer that
outgrows it: 3 MB over a shaped 20 Mbit/s link with a 60 ms round
trip (a ramp of four rounds), pulled after its base.  Everything else about that pull is known by
then, so the layer's download ends later than the model's by

    tcp_bulk_extra_rtts = (measured end - model's end) / RTT
"""
from __future__ import annotations

import statistics

from harness.calibrate import median_duration
from harness.measure import measure
from model.costs import Costs
from model.tcp import kernel_link_model
from vocab.scenario import parse_scenario
from vocab.trace import PhaseRow

def _after_base_toml(name: str, description: str, network: str, ref: str, layers: str,
                     at_s: float) -> str:
    """A scenario that pulls the base image, then at `at_s` the image `ref` of the
    base and `layers` (the measured pull).  The bottom layer carries the images'
    userland, too big to fit TCP's initial window, so it is pulled first."""
    return f"""
[scenario]
name = "{name}"
description = "{description}"
replications = 3

[network]
{network}

[[image]]
ref = "calibration/base:1"
layers = [{{ name = "base", size_mb = 3.0, compression = 2.0 }}]

[[image]]
ref = "{ref}"
layers = [{{ name = "base", size_mb = 3.0, compression = 2.0 }},
          {layers}]

[[step]]
command = "pull"
image = "calibration/base:1"

[[step]]
at_s = {at_s}
command = "pull"
image = "{ref}"
"""


RTT_MS = 40.0
TCP_CALIBRATION_TOML = _after_base_toml(
    "calibration-tcp",
    "docksim's calibration of connection set-up: a tiny pull over a real 40 ms round trip.",
    f"rtt_ms = {RTT_MS}", "calibration/tiny:1",
    '{ name = "tiny-a", size_mb = 0.008, compression = 1.0 },\n'
    '          { name = "tiny-b", size_mb = 0.008, compression = 1.0 }', 1.5)
MEASURED = "s1-"

# The rate of an unshaped kernel link: one incompressible 20 MB layer with no
# round trip to wait for (so no slow start either).  The link is bound by the
# CPU, whose speed for it wanders: with three replications, four calibrations
# within an hour put the rate up to 40 % apart, so the median is taken over six.
BULK_TOML = """
[scenario]
name = "calibration-veth"
description = "docksim's calibration of an unshaped kernel link: one 20 MB layer."
replications = 6

[[image]]
ref = "calibration/bulk:1"
layers = [{ name = "base", size_mb = 3.0, compression = 2.0 },
          { name = "bulk", size_mb = 20.0, compression = 1.0 }]

[[step]]
command = "pull"
image = "calibration/bulk:1"
"""


RAMP_RTT_MS = 60.0
RAMP_TOML = _after_base_toml(
    "calibration-tcp-ramp",
    "docksim's calibration of leaving slow start: 3 MB over a shaped 20 Mbit/s, 60 ms link.",
    f"bandwidth_mbps = 20\nrtt_ms = {RAMP_RTT_MS}", "calibration/ramp:1",
    '{ name = "ramp", size_mb = 3.0, compression = 1.0 }', 2.5)


def tcp_scenario():
    return parse_scenario(TCP_CALIBRATION_TOML, "<calibration-tcp>")


def bulk_scenario():
    return parse_scenario(BULK_TOML, "<calibration-veth>")


def ramp_scenario():
    return parse_scenario(RAMP_TOML, "<calibration-tcp-ramp>")


def _median_phase(rows: list[PhaseRow], phase: str, request: str = MEASURED, layer: str = "") -> float:
    return median_duration(rows, lambda r: r.phase == phase and r.request.startswith(request)
                           and r.layer == layer)


def derive_tcp_setup(real_rows: list[PhaseRow], costs: Costs) -> Costs:
    """`costs` with tcp_setup_rtts_* read off the kernel-network pull (see the docstring)."""
    import model
    rtt_s = RTT_MS / 1000
    scenario, kernel_costs = kernel_link_model(tcp_scenario(), costs.with_(
        tcp_setup_rtts_resolve=0.0, tcp_setup_rtts_blob=0.0))
    simulated = model.simulate(scenario, costs=kernel_costs)
    resolve_rtts = max(0.0, (_median_phase(real_rows, "resolve")
                             - _median_phase(simulated, "resolve")) / rtt_s)
    kernel_costs = kernel_costs.with_(tcp_setup_rtts_resolve=resolve_rtts)
    simulated = model.simulate(scenario, costs=kernel_costs)
    blob_rtts = max(0.0, (_median_phase(real_rows, "pull") - _median_phase(simulated, "pull")) / rtt_s)
    return costs.with_(tcp_setup_rtts_resolve=round(resolve_rtts, 2),
                       tcp_setup_rtts_blob=round(blob_rtts, 2))


def _median_download_end_s(rows: list[PhaseRow], layer: str) -> float:
    """Median over replications of when `layer`'s download ended, from its
    request's start (the measured pull's request)."""
    starts = {(r.replication, r.request): r.start_s for r in rows
              if r.phase == "request" and r.request.startswith(MEASURED)}
    ends = [r.end_s - starts[(r.replication, r.request)] for r in rows
            if r.phase == "download" and r.layer == layer and (r.replication, r.request) in starts]
    if not ends:
        raise ValueError(f"calibration: no download of layer {layer!r} was recorded")
    return statistics.median(ends)


def derive_bulk_extra(real_rows: list[PhaseRow], costs: Costs) -> Costs:
    """`costs` with tcp_bulk_extra_rtts read off the ramp layer's download (see
    the docstring); `costs` must already hold the connection set-up."""
    import model
    scenario, kernel_costs = kernel_link_model(ramp_scenario(), costs.with_(tcp_bulk_extra_rtts=0.0))
    simulated_s = _median_download_end_s(model.simulate(scenario, costs=kernel_costs), "ramp")
    late_s = _median_download_end_s(real_rows, "ramp") - simulated_s
    return costs.with_(tcp_bulk_extra_rtts=round(max(0.0, late_s / (RAMP_RTT_MS / 1000)), 2))


def derive_kernel_link(real_rows: list[PhaseRow], costs: Costs) -> Costs:
    """`costs` with kernel_link_Bps read off the bulk layer's download: the model's
    download is a fixed part plus bytes / rate, so two simulations (an endless
    rate, and 1 GB/s) give both parts, and the measurement gives the rate."""
    import model

    def simulated_s(rate_Bps: float) -> float:
        scenario, kernel_costs = kernel_link_model(bulk_scenario(), costs.with_(kernel_link_Bps=rate_Bps))
        return _median_phase(model.simulate(scenario, costs=kernel_costs), "download", "s0-", "bulk")
    fixed_s = simulated_s(1e15)
    at_1GBps_s = simulated_s(1e9) - fixed_s
    measured_s = _median_phase(real_rows, "download", "s0-", "bulk") - fixed_s
    return costs.with_(kernel_link_Bps=1e9 * at_1GBps_s / max(measured_s, 1e-6))


def calibrate_tcp(costs: Costs, engine: str, progress=lambda message: None) -> Costs:
    """Measure the bulk pull, the tiny pull and the ramp pull on kernel networks
    with `engine`; return `costs` with the kernel link's rate, the connection
    set-up and the round trips lost leaving slow start filled in."""
    rows = measure(bulk_scenario(), progress=progress, engine=engine, network="kernel")
    costs = derive_kernel_link(rows, costs)
    rows = measure(tcp_scenario(), progress=progress, engine=engine, network="kernel")
    costs = derive_tcp_setup(rows, costs)
    rows = measure(ramp_scenario(), progress=progress, engine=engine, network="kernel")
    return derive_bulk_extra(rows, costs)
