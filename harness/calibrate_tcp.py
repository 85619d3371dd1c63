"""Calibration's kernel-network part: the round trips an engine spends opening
TCP connections.

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
"""
from __future__ import annotations

import statistics

from harness.measure import measure
from model.costs import Costs
from model.tcp import kernel_link_model
from vocab.scenario import parse_scenario
from vocab.trace import PhaseRow

RTT_MS = 40.0
TCP_CALIBRATION_TOML = f"""
[scenario]
name = "calibration-tcp"
description = "docksim's calibration of connection set-up: a tiny pull over a real 40 ms round trip."
replications = 3

[network]
rtt_ms = {RTT_MS}

[[image]]
ref = "calibration/base:1"
layers = [{{ name = "base", size_mb = 3.0, compression = 2.0 }}]

[[image]]
ref = "calibration/tiny:1"
layers = [{{ name = "base", size_mb = 3.0, compression = 2.0 }},
          {{ name = "tiny-a", size_mb = 0.008, compression = 1.0 }},
          {{ name = "tiny-b", size_mb = 0.008, compression = 1.0 }}]

# The bottom layer carries the images' userland (too big to fit TCP's initial
# window), so it is pulled first; the measured pull is the second one.
[[step]]
command = "pull"
image = "calibration/base:1"

[[step]]
at_s = 1.5
command = "pull"
image = "calibration/tiny:1"
"""
MEASURED = "s1-"


def tcp_scenario():
    return parse_scenario(TCP_CALIBRATION_TOML, "<calibration-tcp>")


def _median_phase(rows: list[PhaseRow], phase: str) -> float:
    values = [r.duration_s for r in rows if r.phase == phase and r.request.startswith(MEASURED)]
    if not values:
        raise ValueError(f"calibration: no {phase} phase was measured on the kernel network")
    return statistics.median(values)


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


def calibrate_tcp(costs: Costs, engine: str, progress=lambda message: None) -> Costs:
    """Measure the tiny pull on a kernel network with `engine`; return `costs` with
    the connection set-up filled in."""
    rows = measure(tcp_scenario(), progress=progress, engine=engine, network="kernel")
    return derive_tcp_setup(rows, costs)
