#!/usr/bin/env python3
"""What do docksim's kernel networks (harness/netns.py) really deliver?  For a
few link settings, one node fetching from the registry's namespace:

* RTT: median TCP connect time and one-byte echo time (20 samples);
* goodput: one download of 3 s worth of the rate, from request to last byte
  (slow start and the first round trip included), and the steady rate of a 4 s
  download after 2 s of warm-up;
* the delay line's own ceiling: the same with no rate limit at all.

    sudo .venv/bin/python bench/netns_link.py [--quick]

Needs root.  Prints one table; every figure is TCP payload (goodput), 10**6 bit/s.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from harness import netprobe  # noqa: E402
from harness.netns import LinkSpec, build_network, why_unavailable  # noqa: E402

RATES = [10, 100, 1000]
RTTS = [0, 20, 100]


def one(bandwidth: float | None, rtt_ms: float, delay: str = "auto", transfer_s: float = 3.0) -> dict:
    with build_network(["node"], access={"node": LinkSpec(bandwidth, 0)}, rtt_ms=rtt_ms,
                       delay=delay) as net:
        ns = net.node_ns["node"]
        with netprobe.serving(net, net.registry_ns):
            rtt = netprobe.measure_rtt(net, ns, net.registry_addr, count=20)
            nbytes = int((bandwidth or 1000) * 1e6 / 8 * transfer_s)
            whole = netprobe.run_fetches(net, [(ns, net.registry_addr)], nbytes)[0]
            steady = netprobe.run_fetches(net, [(ns, net.registry_addr)], 10**13, seconds=4, warmup_s=2)[0]
    return {"mode": net.delay_mode, "rtt": rtt, "whole": whole, "steady": steady,
            "relay": net.relay_stats, "nbytes": nbytes}


def row(label: str, r: dict) -> str:
    drops = r["relay"].get("drops", 0) + r["relay"].get("send_errors", 0) if r["relay"] else "-"
    return (f"{label:<22} {r['mode']:<6} {r['rtt']['connect_ms']:>8.2f} {r['rtt']['echo_ms']:>8.2f} "
            f"{r['nbytes'] / 1e6:>7.1f} {r['whole']['mbps']:>9.1f} {r['steady']['window_mbps']:>9.1f} {drops!s:>6}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 Mbit/s and the ceiling only")
    args = parser.parse_args()
    reason = why_unavailable()
    if reason:
        print(f"bench/netns_link.py: {reason}", file=sys.stderr)
        return 2
    print(f"{'link':<22} {'delay':<6} {'conn ms':>8} {'echo ms':>8} {'MB':>7} {'whole':>9} {'steady':>9} {'drops':>6}")
    for bandwidth in ([100] if args.quick else RATES):
        for rtt_ms in RTTS:
            print(row(f"{bandwidth} Mbit/s, {rtt_ms} ms RTT", one(bandwidth, rtt_ms)), flush=True)
    for rtt_ms in ([0, 20] if args.quick else [0, 2, 20, 100]):
        label = f"unlimited, {rtt_ms} ms RTT"
        print(row(label, one(None, rtt_ms, delay="relay" if rtt_ms else "auto")), flush=True)
    print("whole: one download of 3 s worth (1000 Mbit/s assumed when unlimited), request to last byte;\n"
          "steady: 4 s download, goodput after 2 s; drops: frames the delay line lost (- = no delay line).\n"
          "tbf counts Ethernet frames: one TCP flow's goodput is at most 1448/1514 = 95.6 % of the rate.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
