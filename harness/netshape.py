"""Traffic shaping with `tc`: a token bucket (tbf) for a link's rate, netem for
its delay where the kernel has netem.

What a tbf link reproduces: a bottleneck of `bandwidth_mbps` (10**6 bit/s of
Ethernet frames: tbf counts the 14-byte Ethernet header but not preamble, FCS
or inter-frame gap) with a drop-tail FIFO in front of it.  One TCP flow of
1448-byte segments (with timestamps) gets at most 1448/1514 = 95.6 % of the
rate as goodput.  The queue holds `queue_s` worth of the rate (one
bandwidth-delay product of the longest path through the link, at least 20 ms),
enough for one TCP flow to keep the link busy.  Under load it adds up to that
much queueing delay, as a real bottleneck buffer does.  The bucket lets a burst
of 1 ms worth of the rate (at least two full frames) through at once.

netem (when present) adds a fixed one-way delay to every packet leaving a
device; no jitter, no loss, no reordering.  When tbf and netem share a device,
netem is the root and tbf its child: packets are delayed, then paced.
"""
from __future__ import annotations

import functools

from harness import netcmd

FRAME_BYTES = 1514          # a full Ethernet frame at MTU 1500, as tbf counts it
MIN_QUEUE_S = 0.020
BURST_S = 0.001
NETEM_LIMIT_PACKETS = 100_000  # netem's default of 1000 would drop at ~1 Gbit/s x 20 ms


def tbf_params(bandwidth_mbps: float, queue_s: float) -> tuple[int, int, int]:
    """(rate bit/s, burst bytes, limit bytes) for a link of `bandwidth_mbps`."""
    rate_bps = int(bandwidth_mbps * 1e6)
    rate_bytes_s = rate_bps / 8
    burst = int(max(2 * FRAME_BYTES, rate_bytes_s * BURST_S))
    limit = int(burst + max(4 * FRAME_BYTES, rate_bytes_s * max(queue_s, MIN_QUEUE_S)))
    return rate_bps, burst, limit


def qdisc_lines(dev: str, bandwidth_mbps: float | None, delay_ms: float, queue_s: float) -> list[str]:
    """`tc -batch` lines shaping egress of `dev`: tbf for the rate, netem for
    the delay (only pass a delay when the kernel has netem)."""
    lines = []
    tbf = ""
    if bandwidth_mbps:
        rate, burst, limit = tbf_params(bandwidth_mbps, queue_s)
        tbf = f"tbf rate {rate}bit burst {burst} limit {limit}"
    if delay_ms > 0:
        lines.append(f"qdisc add dev {dev} root handle 1: netem delay {delay_ms:.3f}ms "
                     f"limit {NETEM_LIMIT_PACKETS}")
        if tbf:
            lines.append(f"qdisc add dev {dev} parent 1:1 handle 10: {tbf}")
    elif tbf:
        lines.append(f"qdisc add dev {dev} root handle 1: {tbf}")
    return lines


@functools.cache
def netem_available() -> bool:
    """Does this kernel have netem?  Tried once per process on a veth in a scratch
    namespace (a kernel without it answers "Specified qdisc kind is unknown")."""
    prefix = netcmd.new_prefix()
    ns = f"{prefix}-probe"
    netcmd.write_owner(prefix)
    try:
        netcmd.sh(["ip", "netns", "add", ns])
        netcmd.ip_batch(ns, ["link add probe0 type veth peer name probe1"])
        done = netcmd.sh(["tc", "-n", ns, "qdisc", "add", "dev", "probe0", "root", "netem",
                          "delay", "1ms"], check=False)
        return done.returncode == 0
    finally:
        netcmd.delete_netns(ns)
        netcmd.remove_owner(prefix)
