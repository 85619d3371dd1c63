"""A scenario's network built from real kernel objects: the registry and every
node in network namespaces of their own, joined through a Linux bridge.

    with build_network(["n0", "n1"], access={"n0": LinkSpec(100, 0)},
                       registry_uplink=LinkSpec(200, 0), rtt_ms=20) as net:
        server = net.popen(net.registry_ns, ["python3", "-m", "http.server"])
        net.run(net.node_ns["n0"], ["curl", f"http://{net.registry_addr}:8000/"])

Topology (namespace names are `<prefix>-<role>`, prefix `dks` + 6 hex digits):

    <p>-reg  eth0 10.213.0.1 --veth-- <p>-hub [<p>da ~delay line~ <p>db --veth-- <p>r]--+
    <p>-n0   eth0 10.213.1.1 --veth-- <p>-hub <p>n0 -------------------------- bridge <p>br
    <p>-n1   eth0 10.213.1.2 --veth-- <p>-hub <p>n1 ---------------------------------+

The bridge lives in a hub namespace of its own, so the registry's and the
nodes' namespaces hold nothing but their one interface and loopback.  The
delay-line pair (<p>da, <p>db) exists only when a delay is needed and the
kernel has no netem; otherwise the registry's veth is a bridge port itself.
Nothing is created in the root namespace, and no address outside 10.213.0.0/16
is used; IPv6 is off in every namespace and neighbours (ARP) are static, so no
discovery traffic crosses the links and the first request pays no ARP round trip.

What is shaped (egress qdiscs; see netshape.py for tbf's queue and burst):
* registry uplink rate: tbf on the registry's eth0 (registry -> nodes, the pull
  direction) and on the hub's port toward the registry (nodes -> registry);
* node access rate: tbf on the hub's port toward the node (registry -> node)
  and on the node's eth0 (node -> registry).
* delay: registry <-> node one way = rtt_ms / 2 + uplink.delay_ms +
  access[node].delay_ms, in both directions.  With netem: netem on the same four
  devices (rtt/2 + uplink delay on the uplink's, the access delay on the node's).
  Without: one delay line (delayline.py) on the uplink adds all of it, keyed by
  the node's MAC address.  Node <-> node traffic crosses only the bridge: it gets
  the access links' rates, and their delays only with netem.
Offloads (TSO, GSO, GRO, checksum) are off on every veth, so frames are MTU-sized
everywhere, as on a wire, and tbf paces real packets rather than 64 KB bursts.
TCP itself is the kernel's own, with this machine's settings (congestion control,
buffer sizes), which every new namespace inherits.

Everything is removed when the `with` block ends, also after an exception, a
failure half-way through building, Ctrl-C or SIGTERM (in the main thread,
SIGTERM is turned into SystemExit(143) while the network exists, unless the
caller already handles SIGTERM).  Processes still running in the namespaces are
sent SIGTERM, then SIGKILL after 5 s.  A run killed with SIGKILL leaves its
namespaces behind; `cleanup_stale()` removes those whose owner is dead.
"""
from __future__ import annotations

import logging
import signal
import subprocess
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from harness import delayline, netcmd, netshape
from harness.netcmd import NetworkError, why_unavailable

MAX_NODES = 1000
REGISTRY_ADDR = "10.213.0.1"
REGISTRY_MAC = "02:64:6b:ff:00:01"
PREFIX_LEN = 16
log = logging.getLogger(__name__)

__all__ = ["LinkSpec", "Network", "NetworkError", "build_network", "cleanup_stale", "why_unavailable"]


@dataclass(frozen=True)
class LinkSpec:
    """One link: rate in 10**6 bit/s (None = unshaped) and one-way delay in ms."""
    bandwidth_mbps: float | None = None
    delay_ms: float = 0.0

    def __post_init__(self):
        if self.bandwidth_mbps is not None and not self.bandwidth_mbps > 0:
            raise ValueError(f"bandwidth_mbps must be positive or None, not {self.bandwidth_mbps!r}")
        if not self.delay_ms >= 0:
            raise ValueError(f"delay_ms must be at least 0, not {self.delay_ms!r}")


@dataclass
class Network:
    """A built network: where things are and how to run programs inside it."""
    prefix: str
    delay_mode: str                      # none | netem | relay
    hub_ns: str
    registry_ns: str
    registry_addr: str
    node_ns: dict[str, str]
    node_addr: dict[str, str]
    path_rtt_ms: dict[str, float]        # designed registry <-> node round trip, per node
    relay_stats: dict = field(default_factory=dict)  # the delay line's counters, after the end
    _procs: list = field(default_factory=list, repr=False)
    _relay: subprocess.Popen | None = field(default=None, repr=False)

    def _argv(self, ns: str, argv: list[str]) -> list[str]:
        if not ns.startswith(self.prefix + "-"):
            raise ValueError(f"{ns!r} is not a namespace of this network")
        return netcmd.nsenter_argv(ns, argv)

    def popen(self, ns: str, argv: list[str], **kw) -> subprocess.Popen:
        """Start argv inside namespace `ns` (nsenter --net; the PID is argv's own).
        If still running when the network is removed, it gets SIGTERM then SIGKILL."""
        proc = subprocess.Popen(self._argv(ns, argv), **kw)
        self._procs.append(proc)
        return proc

    def run(self, ns: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
        """Run argv inside namespace `ns` to completion (subprocess.run's arguments)."""
        return subprocess.run(self._argv(ns, argv), **kw)


def _node_mac(index: int) -> str:
    return f"02:64:6b:00:{index >> 8:02x}:{index & 0xff:02x}"


def _node_addr(index: int) -> str:
    return f"10.213.{1 + index // 250}.{1 + index % 250}"


def _build(net: Network, nodes: list[str], access: dict[str, LinkSpec], uplink: LinkSpec,
           base_ms: float) -> None:
    p, hub, reg = net.prefix, net.hub_ns, net.registry_ns
    relay, netem = net.delay_mode == "relay", net.delay_mode == "netem"
    specs = {n: access.get(n, LinkSpec()) for n in nodes}
    rtt_s = {n: net.path_rtt_ms[n] / 1000.0 for n in nodes}
    longest_s = max(rtt_s.values())
    netcmd.ip_batch(None, [f"netns add {ns}" for ns in (hub, reg, *net.node_ns.values())])

    # every veth is created from the hub with its far end directly in its namespace
    bridge, reg_port = f"{p}br", f"{p}r"
    reg_peer = f"{p}da" if relay else reg_port
    ports = [f"{p}n{i}" for i in range(len(nodes))]
    create = [f"link add {bridge} type bridge forward_delay 0",
              f"link add {reg_peer} type veth peer name eth0 address {REGISTRY_MAC} netns {reg}"]
    if relay:
        create.append(f"link add {p}db type veth peer name {reg_port}")
    create += [f"link add {port} type veth peer name eth0 address {_node_mac(i)} netns {net.node_ns[n]}"
               for i, (port, n) in enumerate(zip(ports, nodes))]
    netcmd.ip_batch(hub, create)

    veths = [reg_peer] + ([f"{p}db", reg_port] if relay else []) + ports
    hub_ip = [f"link set {dev} master {bridge}" for dev in (reg_port, *ports)]
    hub_ip += [f"link set {dev} up" for dev in (bridge, *veths)]
    up_delay = base_ms if netem else 0.0
    hub_tc = netshape.qdisc_lines(reg_port, uplink.bandwidth_mbps, up_delay, longest_s)
    for port, n in zip(ports, nodes):  # toward the node: its download direction
        hub_tc += netshape.qdisc_lines(port, specs[n].bandwidth_mbps,
                                       specs[n].delay_ms if netem else 0.0, rtt_s[n])
    scripts = {hub: netcmd.ns_script(veths, hub_ip, hub_tc)}

    hosts = [(reg, REGISTRY_ADDR, REGISTRY_MAC, uplink, up_delay, longest_s)]
    hosts += [(net.node_ns[n], net.node_addr[n], _node_mac(i), specs[n],
               specs[n].delay_ms if netem else 0.0, rtt_s[n]) for i, n in enumerate(nodes)]
    for ns, addr, mac, spec, delay_ms, queue_s in hosts:
        ip_lines = ["link set lo up", f"addr add {addr}/{PREFIX_LEN} dev eth0", "link set eth0 up"]
        ip_lines += [f"neigh replace {a} lladdr {m} dev eth0 nud permanent"
                     for _, a, m, *_ in hosts if a != addr]
        scripts[ns] = netcmd.ns_script(["eth0"], ip_lines,
                                 netshape.qdisc_lines("eth0", spec.bandwidth_mbps, delay_ms, queue_s))
    for ns, script in scripts.items():
        netcmd.in_ns_shell(ns, script)
    if relay:
        extra = {_node_mac(i): specs[n].delay_ms for i, n in enumerate(nodes)}
        net._relay = delayline.start(netcmd.nsenter_argv(hub, []), f"{p}da", f"{p}db", base_ms, extra)


def _teardown(prefix: str, procs: list[subprocess.Popen],
              relay: subprocess.Popen | None) -> tuple[dict, list[str]]:
    """Remove everything of `prefix`: processes first (a namespace with a process
    in it outlives its name), then namespaces, then the owner record."""
    problems, stats = [], {}
    if relay is not None:
        if relay.poll() is not None:
            problems.append(f"the delay line had exited ({relay.returncode}) before the end")
        stats = delayline.stop(relay)
    names = [ns for ns in netcmd.list_netns() if ns.startswith(prefix + "-")]
    mine = [p.pid for p in procs if p.poll() is None]
    netcmd.terminate(sorted(set(mine) | set(netcmd.pids_in_netns(names))))
    for proc in procs:
        proc.poll()  # reap, so no zombie of ours remains
    for ns in names:
        try:
            netcmd.delete_netns(ns)
        except NetworkError as error:
            problems.append(str(error))
    for link in netcmd.root_links_with(prefix):
        netcmd.sh(["ip", "link", "delete", link], check=False)
    left = [ns for ns in netcmd.list_netns() if ns.startswith(prefix + "-")] + netcmd.root_links_with(prefix)
    if left:
        problems.append(f"still there: {', '.join(left)}")
    else:
        netcmd.remove_owner(prefix)
    return stats, problems


class _Signals:
    """SIGTERM raises SystemExit while the network exists (so `finally` blocks
    run); while tearing down, SIGINT and SIGTERM wait until the end.  Python only
    lets the main thread set handlers; elsewhere the caller's handling stays."""

    def __init__(self):
        self.main = threading.current_thread() is threading.main_thread()
        self.term_installed = False

    def arm(self) -> None:
        if self.main and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _exit_on_term)
            self.term_installed = True

    @contextmanager
    def deferred(self):
        if not self.main:
            yield
            return
        pending: list[int] = []
        saved = {s: signal.signal(s, lambda signum, frame: pending.append(signum))
                 for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            if self.term_installed:
                saved[signal.SIGTERM] = signal.SIG_DFL
            for s, handler in saved.items():
                signal.signal(s, handler)
            if self.term_installed and signal.SIGTERM in pending:
                raise SystemExit(128 + signal.SIGTERM)
            for s in sorted(set(pending)):  # now for the caller's own handlers
                signal.raise_signal(s)


def _exit_on_term(signum, frame):
    raise SystemExit(128 + signum)


@contextmanager
def build_network(node_names: list[str], access: dict[str, LinkSpec] | None = None,
                  registry_uplink: LinkSpec | None = None, rtt_ms: float = 0.0,
                  *, delay: str = "auto") -> Iterator[Network]:
    """Build the network, yield it, remove it.  `rtt_ms` is the base round trip
    between the registry and every node; link delays add to it (see the module
    docstring).  `delay`: auto (netem if the kernel has it, else the delay
    line), netem, or relay."""
    access = dict(access or {})
    uplink = registry_uplink or LinkSpec()
    if not node_names or len(set(node_names)) != len(node_names) or len(node_names) > MAX_NODES:
        raise ValueError(f"need 1 to {MAX_NODES} distinct node names, got {node_names!r}")
    if set(access) - set(node_names):
        raise ValueError(f"access links for unknown nodes: {sorted(set(access) - set(node_names))}")
    if not rtt_ms >= 0:
        raise ValueError(f"rtt_ms must be at least 0, not {rtt_ms!r}")
    if delay not in ("auto", "netem", "relay"):
        raise ValueError(f"delay must be auto, netem or relay, not {delay!r}")
    base_ms = rtt_ms / 2 + uplink.delay_ms
    path_rtt = {n: 2 * (base_ms + access.get(n, LinkSpec()).delay_ms) for n in node_names}
    signals, net, ok = _Signals(), None, False
    try:
        signals.arm()  # before anything exists: the netem probe makes a namespace too
        mode = _delay_mode(delay, any(path_rtt.values()))
        prefix = netcmd.new_prefix()
        net = Network(prefix, mode, f"{prefix}-hub", f"{prefix}-reg", REGISTRY_ADDR,
                      {n: f"{prefix}-n{i}" for i, n in enumerate(node_names)},
                      {n: _node_addr(i) for i, n in enumerate(node_names)}, path_rtt)
        netcmd.write_owner(prefix)
        _build(net, list(node_names), access, uplink, base_ms)
        yield net
        ok = True
    finally:
        problems = []
        with signals.deferred():
            if net is not None:
                net.relay_stats, problems = _teardown(net.prefix, net._procs, net._relay)
        for problem in problems:
            log.warning("network %s: %s", net.prefix, problem)
        if ok and problems:
            raise NetworkError(f"network {net.prefix} was not fully removed: {'; '.join(problems)}")


def _delay_mode(delay: str, needed: bool) -> str:
    if not needed:
        return "none"
    if delay == "relay" or (delay == "auto" and not netshape.netem_available()):
        return "relay"
    if netshape.netem_available():
        return "netem"
    raise NetworkError("delay='netem' asked for, but this kernel has no netem")


def cleanup_stale() -> list[str]:
    """Remove the namespaces (and their processes) of docksim networks whose
    owning process is dead; return their prefixes.  Live runs are left alone."""
    removed = []
    for prefix in sorted(netcmd.known_prefixes()):
        if netcmd.owner_alive(prefix):
            continue
        _, problems = _teardown(prefix, [], None)
        for problem in problems:
            log.warning("stale network %s: %s", prefix, problem)
        removed.append(prefix)
    return removed
