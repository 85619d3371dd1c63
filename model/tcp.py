"""TCP start-up: what a fresh transfer loses to slow start, as one extra delay.

What it models (``[network] slow_start = true``): every blob GET and every
piece starts with TCP's initial congestion window of IW = 10 segments of
1460 bytes (RFC 6928) and doubles it each round trip until the window covers
the bandwidth-delay product of its path, BDP = r * RTT.  After k rounds a
flow has sent IW * (2^k - 1) bytes; it reaches its rate r after

    k = ceil(log2(BDP / IW + 1))  rounds                              (9)

A flow of S bytes therefore takes

    S <= IW * (2^k - 1):  j * RTT with j = ceil(log2(S / IW + 1))   (10a)
    otherwise:            k * RTT + (S - IW * (2^k - 1)) / r         (10b)

instead of the fluid S / r.  The model charges the difference as a delay
before the flow joins the network (``slow_start_s``), with r the path's
uncontended bottleneck: under contention the real window stops growing
earlier, so this is an upper bound of the penalty.

A flow that outgrows its ramp (10b) takes longer than (10b) says: its last
doubling overfills the bottleneck's queue, packets are lost and recovered,
and the queue drains.  How long that takes depends on the kernel's
congestion control, so it is measured, not derived:
``Costs.tcp_bulk_extra_rtts`` round trips (harness/calibrate_tcp.py).  A bare
socket sending 3 MB with sendfile(2) over a shaped kernel link took 1.2
round trips more than (10b) at 10 Mbit/s and 80 ms (BBR; about 130 segments
were sent twice) and 1.3 at 20 Mbit/s and 60 ms (1.0 with CUBIC).  Pulls of
single 3-16 MB layers over 10-100 Mbit/s and 20-160 ms, through docksim's
engine and through dockerd, came out 1.0-1.4 round trips longer than the
model without it.  A flow that ends within its ramp (10a) never fills the
queue and pays nothing.

Left out: the window's later sawtooth and its losses, delayed ACKs, and the
reuse of a warm connection (a connection idle for longer than its
retransmission timeout restarts from the initial window, RFC 5681 section
4.1, and dockerd opened a new connection for every blob, config included).
With ``slow_start = false`` (the default, and what docksim's real engine
does: its link is a pacer, not TCP) flows start at their fair share at once.
"""
from __future__ import annotations

import dataclasses
import math

from model.costs import Costs
from vocab.scenario import Scenario

SEGMENT_BYTES = 1460
INITIAL_WINDOW_BYTES = 10 * SEGMENT_BYTES


def slow_start_s(size_bytes: float, rtt_s: float, rate_Bps: float, extra_rtts: float = 0.0) -> float:
    """Equations (9)-(10) minus the fluid time: the extra seconds slow start costs,
    plus `extra_rtts` round trips when the flow outgrows its ramp (10b)."""
    if size_bytes <= 0 or rtt_s <= 0 or not math.isfinite(rate_Bps):
        return 0.0
    bdp_bytes = rate_Bps * rtt_s
    rounds = max(0, math.ceil(math.log2(bdp_bytes / INITIAL_WINDOW_BYTES + 1)))
    ramp_bytes = INITIAL_WINDOW_BYTES * (2 ** rounds - 1)
    fluid_s = size_bytes / rate_Bps
    if size_bytes <= ramp_bytes:
        needed = math.ceil(math.log2(size_bytes / INITIAL_WINDOW_BYTES + 1))
        return max(0.0, needed * rtt_s - fluid_s)
    return max(0.0, (rounds + extra_rtts) * rtt_s + (size_bytes - ramp_bytes) / rate_Bps - fluid_s)


# TCP payload per Ethernet frame on a 1500-byte MTU with timestamps: what tbf leaves for data
TCP_GOODPUT_RATIO = 1448 / 1514


def kernel_link_model(scenario: Scenario, costs: Costs) -> tuple[Scenario, Costs]:
    """The model of a real TCP network (`--network kernel`): frames carry 1448
    payload bytes of 1514, every transfer starts in slow start (plus
    Costs.tcp_bulk_extra_rtts when it outgrows it), opening a connection
    costs the calibrated round trips (Costs.tcp_setup_rtts_*), and a
    link without a bandwidth limit moves what veths without offloads move
    (Costs.kernel_link_Bps).  The registry's emulated link has none of these."""
    network = dataclasses.replace(scenario.network, slow_start=True)
    return (dataclasses.replace(scenario, network=network),
            costs.with_(link_goodput_ratio=TCP_GOODPUT_RATIO, unlimited_link_Bps=costs.kernel_link_Bps))
