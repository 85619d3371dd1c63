"""docksim's kernel networks (harness/netns.py), on real kernel objects: network
namespaces, veths, a bridge, tbf and the delay line (or netem where the kernel
has it).  The figures are measured with TCP between the registry's namespace
and the nodes'.  Every test also checks that nothing of its network remains.
Run as root; with ethtool installed.
"""
from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness import netcmd, netprobe, netshape
from harness.netns import LinkSpec, NetworkError, build_network, cleanup_stale

pytestmark = pytest.mark.skipif(sys.platform != "linux" or bool(netcmd.why_unavailable()),
                                reason=str(sys.platform == "linux" and netcmd.why_unavailable()))
REPO = Path(__file__).resolve().parent.parent
TCP_SHARE = 1448 / 1514  # goodput / tbf rate for full-sized segments with timestamps


def leftovers(prefix: str) -> list[str]:
    """Whatever of `prefix` still exists: namespaces, links, owner record, processes."""
    found = [ns for ns in netcmd.list_netns() if ns.startswith(prefix)]
    found += netcmd.root_links_with(prefix)
    if (netcmd.OWNER_DIR / f"{prefix}.pid").exists():
        found.append("owner record")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if prefix.encode() in (entry / "cmdline").read_bytes():
                    found.append(f"process {entry.name}")
            except OSError:
                pass
    return found


def test_rate_of_a_100_mbit_link():
    with build_network(["node"], access={"node": LinkSpec(100, 0)}) as net:
        ns = net.node_ns["node"]
        with netprobe.serving(net, net.registry_ns):
            result = netprobe.run_fetches(net, [(ns, net.registry_addr)], 20_000_000)[0]
    assert result["bytes"] == 20_000_000
    assert 90 <= result["mbps"] <= 100, result
    assert not leftovers(net.prefix)


def test_round_trip_and_rate_through_the_delay():
    """20 ms base RTT for both nodes, 5 ms more each way on node "far"'s link."""
    access = {"near": LinkSpec(100, 0), "far": LinkSpec(None, 5)}
    with build_network(["near", "far"], access=access, rtt_ms=20) as net:
        assert net.path_rtt_ms == {"near": 20, "far": 30}
        with netprobe.serving(net, net.registry_ns):
            near = netprobe.measure_rtt(net, net.node_ns["near"], net.registry_addr, count=15)
            far = netprobe.measure_rtt(net, net.node_ns["far"], net.registry_addr, count=15)
            fetch = netprobe.run_fetches(net, [(net.node_ns["near"], net.registry_addr)], 20_000_000)[0]
        relay = net._relay
    for measured in (near["connect_ms"], near["echo_ms"]):
        assert 18 <= measured <= 22, near
    for measured in (far["connect_ms"], far["echo_ms"]):
        assert 28 <= measured <= 32, far
    # slow start over 20 ms costs a few round trips of the 1.7 s transfer
    assert 85 <= fetch["mbps"] <= 100, fetch
    if net.delay_mode == "relay":
        assert relay.poll() is not None
        assert net.relay_stats["drops"] == 0 and net.relay_stats["a_to_b"] > 13_000, net.relay_stats
    assert not leftovers(net.prefix)


def test_eight_nodes_share_the_registry_uplink():
    nodes = [f"node{i}" for i in range(8)]
    with build_network(nodes, registry_uplink=LinkSpec(200, 0), rtt_ms=20) as net:
        with netprobe.serving(net, net.registry_ns):
            results = netprobe.run_fetches(net, [(net.node_ns[n], net.registry_addr) for n in nodes],
                                           10**12, seconds=3.5, warmup_s=1.0)
    rates = [r["window_mbps"] for r in results]
    total = sum(rates)
    fair = 200 * TCP_SHARE / 8
    # the uplink is full and never exceeded; TCP (BBR here) shares it, not perfectly
    assert 0.85 * 200 <= total <= 200, rates
    assert statistics.mean(rates) == pytest.approx(fair, rel=0.12), rates
    assert min(rates) >= 0.5 * fair, rates
    assert not leftovers(net.prefix)


def test_an_exception_in_the_body_still_removes_everything():
    with pytest.raises(RuntimeError, match="boom"):
        with build_network(["a", "b"], access={"a": LinkSpec(50, 2)}, rtt_ms=4) as net:
            sleeper = net.popen(net.node_ns["a"], ["sleep", "60"])
            assert net.prefix in " ".join(netcmd.list_netns())
            raise RuntimeError("boom")
    assert sleeper.poll() is not None
    assert not leftovers(net.prefix)


def _child(body: str) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys, time
        from harness.netns import build_network, LinkSpec
        nodes = [f"node{{i}}" for i in range(8)]
        with build_network(nodes, access={{n: LinkSpec(100, 1) for n in nodes}}, rtt_ms=10) as net:
            print(net.prefix, flush=True)
    """) + textwrap.indent(textwrap.dedent(body), "    ")
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _prefix_of(pid: int, timeout_s: float = 10) -> str:
    """The prefix of the network process `pid` is building, once its first namespace exists."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for record in netcmd.OWNER_DIR.glob("dks*.pid"):
            try:
                if record.read_text().split()[0] == str(pid):
                    prefix = record.stem
                    if prefix + "-hub" in netcmd.list_netns():
                        return prefix
            except (OSError, IndexError):
                pass
        time.sleep(0.001)
    raise AssertionError("the child never started building")


# SIGTERM becomes SystemExit(143); an uncaught KeyboardInterrupt ends Python by SIGINT itself
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, -signal.SIGINT)])
def test_a_signal_while_building_removes_everything(signum, status):
    child = _child("time.sleep(60)")
    prefix = _prefix_of(child.pid)
    child.send_signal(signum)
    out, err = child.communicate(timeout=30)
    assert prefix not in out, "the signal came too late: the network was already built"
    assert child.returncode == status, err
    assert not leftovers(prefix)


def test_sigterm_while_in_use_removes_everything():
    child = _child("""
        sleeper = net.popen(net.node_ns["node0"], ["sleep", "300"])
        print(sleeper.pid, flush=True)
        time.sleep(300)
    """)
    prefix = child.stdout.readline().strip()
    sleeper = int(child.stdout.readline())
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 143, err
    assert not leftovers(prefix) and not netcmd.alive(sleeper)


def test_cleanup_stale_removes_a_killed_runs_network_only():
    child = _child("""
        sleeper = net.popen(net.node_ns["node3"], ["sleep", "300"])
        print(sleeper.pid, flush=True)
        time.sleep(300)
    """)
    prefix = child.stdout.readline().strip()
    sleeper = int(child.stdout.readline())
    with build_network(["mine"], rtt_ms=2) as live:
        child.kill()
        child.wait()
        child.stdout.close()
        child.stderr.close()
        time.sleep(0.2)  # the delay line dies with its parent (PR_SET_PDEATHSIG)
        left = leftovers(prefix)
        assert f"{prefix}-n3" in left and "owner record" in left, left
        assert not [x for x in left if x.startswith("process")], left  # no delay line
        assert netcmd.alive(sleeper)  # what the run started in its network outlives it
        removed = cleanup_stale()
        assert prefix in removed and live.prefix not in removed
        assert not leftovers(prefix)
        assert not netcmd.alive(sleeper)  # (a zombie until PID 1 reaps it)
        # the live network is intact and still works
        assert live.prefix + "-hub" in netcmd.list_netns()
        with netprobe.serving(live, live.registry_ns):
            assert netprobe.measure_rtt(live, live.node_ns["mine"], live.registry_addr, count=3)["connect_ms"] >= 1.5
    assert not leftovers(live.prefix)


def test_netem_is_detected_and_refused_when_absent():
    if netshape.netem_available():
        pytest.skip("this kernel has netem")
    before = set(netcmd.list_netns())
    with pytest.raises(NetworkError, match="netem"):
        with build_network(["a"], rtt_ms=10, delay="netem"):
            pass
    assert set(netcmd.list_netns()) == before


def test_bad_arguments_create_nothing():
    before = set(netcmd.list_netns())
    for kwargs in ({"node_names": []}, {"node_names": ["a", "a"]},
                   {"node_names": ["a"], "access": {"b": LinkSpec()}},
                   {"node_names": ["a"], "rtt_ms": -1}, {"node_names": ["a"], "delay": "fast"}):
        with pytest.raises(ValueError):
            with build_network(**kwargs):
                pass
    with pytest.raises(ValueError):
        LinkSpec(0, 0)
    assert set(netcmd.list_netns()) == before
