"""The model at cluster scale: worlds of many nodes solved by hand.

Costs are ``Costs.free(...)`` (every fixed cost zero, every rate infinite,
except what a test is about), as in test_model.py, so each expected number is
a line of arithmetic.  80 Mbit/s = 10**7 B/s.
"""
from __future__ import annotations

import pytest

from model import Costs, simulate
from model.simulation import simulate_replication
from model.tcp import INITIAL_WINDOW_BYTES, slow_start_s
from model.topology import REGISTRY, Topology
from vocab.cluster import Registry
from vocab.faults import Fault
from vocab.scenario import parse_scenario
from vocab.trace import parse_request_id, request_metrics

FREE = Costs.free()


def world(body: str, seed: int = 7, replications: int = 1):
    return parse_scenario(f'[scenario]\nname = "t"\nseed = {seed}\n'
                          f'replications = {replications}\n{body}', "test")


def image(ref: str, *layers: tuple[str, float]) -> str:
    entries = ", ".join(f'{{ name = "{n}", size_mb = {mb} }}' for n, mb in layers)
    return f'[[image]]\nref = "{ref}"\nlayers = [{entries}]\n'


def step(command: str, ref: str, node: str = "", at_s: float = 0, extra: str = "") -> str:
    where = f'node = "{node}"\n' if node else ""
    return f'[[step]]\n{where}command = "{command}"\nimage = "{ref}"\nat_s = {at_s}\n{extra}'


def run(scenario, costs=FREE):
    worlds: list = []
    rows = simulate_replication(scenario, 0, scenario.seed, costs, worlds)
    return rows, worlds[0]


def spans(rows, phase):
    return {(r.node, r.layer): (round(r.start_s, 9), round(r.end_s, 9))
            for r in rows if r.phase == phase}


# -- topology -------------------------------------------------------------------------

def test_racks_paths_and_round_trips():
    # 5 nodes, racks of 2: n-0, n-1 in rack 0; n-2, n-3 in rack 1; n-4 in rack 2.
    s = world('[network]\ntopology = "racks"\nrack_size = 2\nrtt_ms = 40\n'
              'rack_uplink_mbps = 800\nregistry_bandwidth_mbps = 8000\n'
              '[[node]]\nname = "n"\ncount = 5\nbandwidth_mbps = 80\nlatency_ms = 1.5\n'
              + image("a:1", ("l", 1)) + step("pull", "a:1"))
    topo = Topology(s, FREE)
    assert topo.path("n-0", "n-1") == (("n-0", "@rack-0"), ("@rack-0", "n-1"))
    assert len(topo.path("n-0", "n-3")) == 4 and len(topo.path(REGISTRY, "n-4")) == 3
    # equation (8): registry 2 * (20 + 0 + 1.5) ms; a peer in the rack 2 * (1.5 + 1.5) ms
    assert topo.rtt_s("n-0", REGISTRY) == pytest.approx(0.043)
    assert topo.rtt_s("n-0", "n-1") == pytest.approx(0.006)
    # every finite link in both directions: 5 access + 3 rack uplinks + the registry's
    assert len(topo.capacity_Bps) == 2 * (5 + 3 + 1)
    assert topo.bottleneck_Bps(topo.links(REGISTRY, "n-4")) == 1e7


def test_slow_start_penalty_by_hand():
    # r = 10**7 B/s, RTT 0.1 s: BDP 10**6 B.  k = ceil(log2(10**6 / 14600 + 1)) = 7 rounds,
    # sending 14600 * 127 = 1,854,200 B.  10 MB: 0.7 s + (10**7 - 1854200) / 10**7 = 1.5145800 s
    # instead of 1.0 s: the penalty is 0.51458 s.
    assert slow_start_s(10_000_000, 0.1, 1e7) == pytest.approx(0.51458)
    # A transfer within the ramp: 100 kB needs ceil(log2(100000 / 14600 + 1)) = 3 rounds.
    assert slow_start_s(100_000, 0.1, 1e7) == pytest.approx(0.3 - 0.01)
    assert slow_start_s(10_000_000, 0.0, 1e7) == 0.0 and INITIAL_WINDOW_BYTES == 14600
    # 1.5 extra round trips cost the 10 MB flow 0.15 s more, and the 100 kB one
    # nothing: it never outgrows the ramp.
    assert slow_start_s(10_000_000, 0.1, 1e7, extra_rtts=1.5) == pytest.approx(0.66458)
    assert slow_start_s(100_000, 0.1, 1e7, extra_rtts=1.5) == pytest.approx(0.29)


def test_slow_start_is_charged_once_per_blob_get():
    body = ('[network]\nbandwidth_mbps = 80\nrtt_ms = 100\nslow_start = true\n'
            + image("a:1", ("l", 10)) + step("pull", "a:1"))
    rows, _ = run(world(body))
    # resolve 3 x 0.1; blob GET 0.1; then 1.0 s of bytes + 0.51458 s of slow start
    assert spans(rows, "download")[("node", "l")] == (0.3, round(0.4 + 1.51458, 9))


# -- the registry server --------------------------------------------------------------

def test_registry_workers_queue_requests_first_come_first_served():
    # One worker, 10 ms a request, rtt 0.  Four nodes resolve at once (3 requests each):
    # the /v2/ probes take 0-10, 10-20, 20-30, 30-40 ms; each node's next request
    # queues behind those already waiting, so node i's resolve ends at 90 + 10 i ms.
    body = ('[[node]]\nname = "n"\ncount = 4\n[registry]\nworkers = 1\nrequest_ms = 10\n'
            + image("a:1", ("l", 1)) + step("pull", "a:1", node="n-*"))
    rows, _ = run(world(body))
    ends = {node: end for (node, _), (_, end) in spans(rows, "resolve").items()}
    assert ends == {"n-0": 0.09, "n-1": 0.1, "n-2": 0.11, "n-3": 0.12}


def test_token_auth_adds_a_round_trip_to_resolve():
    body = ('[network]\nrtt_ms = 100\n[registry]\nauth = "token"\nrequest_ms = 0\n'
            + image("a:1", ("l", 1)) + step("pull", "a:1"))
    rows, _ = run(world(body))
    assert spans(rows, "resolve")[("node", "")] == (0.0, 0.4)  # 401, token, manifest, config


def test_rate_limit_per_address_answers_429_and_the_pull_fails():
    # Three nodes behind one address, 2 pulls allowed: the third is refused at its
    # manifest GET (after /v2/ and the manifest: 2 x 0.05 s), downloads nothing and
    # starts no container.
    body = ('[network]\nrtt_ms = 50\npublic_ips = 1\n[[node]]\nname = "n"\ncount = 3\n'
            '[registry]\nrequest_ms = 0\nrate_limit = { pulls = 2, window_s = 60 }\n'
            + image("a:1", ("l", 1)) + step("run", "a:1", node="n-*"))
    rows, w = run(world(body))
    assert w.registry.counts["429"] == 1
    assert {r.node for r in rows if r.phase == "download"} == {"n-0", "n-1"}
    assert {r.node for r in rows if r.phase == "start"} == {"n-0", "n-1"}
    assert spans(rows, "resolve")[("n-2", "")] == (0.0, 0.1)


def test_kubelet_back_off_retries_until_the_window_reopens():
    # One node, 1 pull per 25 s window.  Pull at 0 passes; the second (at 1 s) gets 429
    # and retries after 10 s (11 s: refused) and 20 s more (31 s: the first GET left
    # the window at 25 s, so it passes).  Its request ends at 31 s.
    body = ('[registry]\nrequest_ms = 0\nrate_limit = { pulls = 1, window_s = 25 }\n'
            + image("a:1", ("l", 1)) + step("pull", "a:1")
            + step("pull", "a:1", at_s=1, extra="retries = 3\n"))
    rows, w = run(world(body))
    assert w.registry.counts["429"] == 2
    (second,) = [r for r in rows if r.phase == "request" and r.request == "s1-c0-r0"]
    assert (second.start_s, second.end_s) == (1.0, 31.0)


class _ScriptedServer:
    """A registry whose blob answers (faults) are given, to solve retries by hand."""

    def __init__(self, env, answers):
        self.env, self.answers = env, list(answers)
        self.spec = Registry()

    def request(self, rtt_s):
        yield self.env.timeout(rtt_s)

    def blob_answer(self):
        return self.answers.pop(0)


def test_retries_back_off_and_resume_with_range():
    # 10 MB at 10**7 B/s, rtt 0.1 s.  Attempt 1: the connection drops after half the
    # bytes (0.1 + 0.5 s); back-off 5 s; attempt 2: 503 (0.1 s); back-off 10 s;
    # attempt 3 resumes the other half (0.1 + 0.5 s).  0.6 + 5 + 0.1 + 10 + 0.6 = 16.3 s.
    import simpy

    from model.flows import FlowNetwork
    from model.sources import Fetcher
    s = world('[network]\nbandwidth_mbps = 80\n' + image("a:1", ("l", 10)) + step("pull", "a:1"))
    env = simpy.Environment()
    topo = Topology(s, FREE)
    fetcher = Fetcher(env, topo, FlowNetwork(env, topo.capacity_Bps), False, 5, {})
    server = _ScriptedServer(env, [Fault("cut", 0.5), Fault("503"), None])
    result = []

    def go():
        result.append((yield from fetcher.blob_get(server, 0.1, topo.links(REGISTRY, "node"),
                                                   10_000_000)))
    env.process(go())
    env.run()
    assert result[0].ok and env.now == pytest.approx(16.3)


def test_a_layer_failing_every_attempt_fails_the_run():
    # 503 (almost) always: 5 attempts of one round trip (0.1 s) with back-offs of
    # 5, 10, 15 and 20 s between them: the download gives up after 50.5 s.
    body = ('[network]\nrtt_ms = 100\n[registry]\nerror_rate = 0.9999999\nrequest_ms = 0\n'
            + image("a:1", ("l", 1)) + step("run", "a:1"))
    rows, w = run(world(body))
    assert w.registry.faults.counts["503"] == 5
    (start, end) = spans(rows, "download")[("node", "l")]
    assert end - start == pytest.approx(50.5)
    assert not [r for r in rows if r.phase in ("extract", "create", "start")]


# -- fan-out: the Dragonfly result ------------------------------------------------------

FANOUT = (image("f:1", ("payload", 200)) + step("pull", "f:1", node="c-*"))


def fanout_s(n: int, mode: str) -> float:
    rows, _ = run(world('[network]\nregistry_bandwidth_mbps = 4000\n'
                        f'[[node]]\nname = "c"\ncount = {n}\nbandwidth_mbps = 200\n'
                        f'[distribution]\nmode = "{mode}"\npeer_upload_mbps = 200\n' + FANOUT))
    return max(r.end_s for r in rows if r.phase == "pull")


@pytest.mark.parametrize("n, expected_s", [(10, 8.0), (20, 8.0), (50, 20.0), (100, 40.0)])
def test_central_fanout_grows_linearly_once_the_source_saturates(n, expected_s):
    # 200 MB at 25 MB/s per client = 8 s, until N clients need more than the source's
    # 500 MB/s (N > 20): then N * 200 MB / 500 MB/s = 0.4 N s.
    assert fanout_s(n, "registry") == pytest.approx(expected_s)


def test_p2p_fanout_stays_near_flat():
    # No faster than one client's link allows (8 s), and growing only with the
    # number of piece generations (log N), not with N.
    times = {n: fanout_s(n, "p2p") for n in (10, 100, 400)}
    assert all(8.0 <= t < 13.0 for t in times.values()), times
    # 4 x the nodes from 100 to 400 adds about two piece generations (~0.6 s each),
    # where the central source would need 4 x the time
    assert times[400] - times[100] < 2.0
    assert times[400] < fanout_s(400, "registry") / 10


def test_p2p_pieces_come_from_a_seed_in_upload_slots():
    # n-0 has the 10 MB layer cached; n-1 pulls it in pieces of 4, 4 and 2 MB, all three
    # at once from n-0's upload slots of 10**7 / 4 B/s each (its downlink, 10**7 / 3
    # each, is not the limit): the 2 MB piece ends at 0.8 s, the others at 1.6 s.
    body = ('[network]\nbandwidth_mbps = 80\n[[node]]\nname = "n-0"\ncached = ["a:1"]\n'
            '[[node]]\nname = "n-1"\n[distribution]\nmode = "p2p"\n'
            + image("a:1", ("l", 10)) + step("pull", "a:1", node="n-1"))
    rows, w = run(world(body))
    assert spans(rows, "download")[("n-1", "l")] == (0.0, 1.6)
    assert w.registry.counts["requests"] == 3  # the resolve only: no blob from the registry


def test_mirror_fetches_once_and_serves_the_rack():
    # Registry uplink 10**6 B/s, mirror link 10**7 B/s.  n-0 at 0 s: the blob flows
    # registry -> mirror -> n-0 at the uplink's 10**6: 10 s.  n-1 at 20 s: from the mirror's
    # disk at 10**7: 1 s.  The registry saw one blob GET (and one resolve).
    body = ('[network]\nregistry_bandwidth_mbps = 8\nbandwidth_mbps = 800\n'
            '[[node]]\nname = "n"\ncount = 2\n'
            '[distribution]\nmode = "mirror"\nmirror_bandwidth_mbps = 80\n'
            + image("a:1", ("l", 10)) + step("pull", "a:1", node="n-0")
            + step("pull", "a:1", node="n-1", at_s=20))
    rows, w = run(world(body))
    downloads = spans(rows, "download")
    assert downloads[("n-0", "l")] == (0.0, 10.0)
    assert downloads[("n-1", "l")] == (20.0, 21.0)
    assert w.registry.counts["requests"] == 3 + 1


# -- extraction and the daemon -------------------------------------------------------------

def test_bandwidth_regimes_network_bound_then_extraction_bound():
    # 10 layers of 10 MB (compression 1), extraction 0.1 s each (10**8 B/s).
    # At 8 Mbit/s (10**6 B/s) the link is the limit: the last byte at 100 s, then the
    # top layer's 0.1 s.  At 8 Gbit/s the three first layers arrive at 10 MB / (10**9 / 3)
    # = 0.03 s, and extraction, strictly in order, takes 10 x 0.1 s from there.
    layers = [(f"l{i}", 10) for i in range(10)]
    body = ('[[node]]\nname = "slow"\nbandwidth_mbps = 8\n[[node]]\nname = "fast"\n'
            'bandwidth_mbps = 8000\n' + image("a:1", *layers) + step("pull", "a:1", node="*"))
    rows, _ = run(world(body), Costs.free(extract_random_Bps=1e8))
    pulls = {r.node: round(r.end_s - r.start_s, 9) for r in rows if r.phase == "pull"}
    assert pulls == {"slow": 100.1, "fast": 1.03}


def test_parallel_extraction_and_cores():
    # Two 10 MB layers arrive together at 2 s (80 Mbit/s shared); extraction 1 s each.
    # serial: 2-3 s, 3-4 s.  parallel with 2 cores: both 2-3 s.  parallel with 1 core: 2-3, 3-4.
    def extracts(daemon):
        body = (f'[network]\nbandwidth_mbps = 80\n[daemon]\n{daemon}\n'
                + image("a:1", ("x", 10), ("y", 10)) + step("pull", "a:1"))
        rows, _ = run(world(body), Costs.free(extract_random_Bps=1e7))
        return sorted(spans(rows, "extract").values())
    assert extracts('extract = "serial"') == [(2.0, 3.0), (3.0, 4.0)]
    assert extracts('extract = "parallel"\ncores = 2') == [(2.0, 3.0), (2.0, 3.0)]
    assert extracts('extract = "parallel"\ncores = 1') == [(2.0, 3.0), (3.0, 4.0)]


def test_api_workers_queue_concurrent_calls():
    # One API worker, calls of 0.002 s (0.001 in, 0.001 out); two rmi of an absent
    # image at once: the second waits for the first call's way in.
    body = ('[daemon]\napi_workers = 1\n' + image("a:1", ("l", 1))
            + step("rmi", "a:1", extra="clients = 2\n"))
    rows, _ = run(world(body), Costs.free(api_call_s=0.002))
    ends = sorted(round(r.end_s, 9) for r in rows if r.phase == "request")
    assert ends == [0.002, 0.003]


# -- the image cache ---------------------------------------------------------------------

CACHE = ('[network]\nbandwidth_mbps = 80\n[[node]]\nname = "n"\ncache_mb = 100\n'
         + image("a:1", ("la", 30)) + image("b:1", ("lb", 30)) + image("c:1", ("lc", 30)))


def _downloads(rows, request):
    return [r.layer for r in rows if r.phase == "download" and r.request == request]


def test_kubelet_gc_evicts_the_least_recently_used_image():
    # a (30 MB), b, c pulled in turn: 90 MB > 85 % of 100 MB, so the LRU image (a) goes:
    # 60 MB <= 80 %.  Pulling a again downloads it; b is still there.
    body = CACHE + (step("pull", "a:1") + step("pull", "b:1", at_s=10)
                    + step("pull", "c:1", at_s=20) + step("pull", "a:1", at_s=30)
                    + step("run", "c:1", at_s=40))
    rows, w = run(world(body))
    assert _downloads(rows, "s3-c0-r0") == ["la"]
    # pulling a back (90 MB again) evicted the LRU one then: b (c was pulled later)
    assert w.daemons["n"].store.images() == ("a:1", "c:1")
    assert not [r for r in rows if r.request == "s4-c0-r0" and r.phase == "pull"]
    assert w.daemons["n"].store.evictions == 2


def test_an_image_in_use_is_never_evicted():
    # a runs from 0 to 100 s; b and c are pulled meanwhile: at 90 MB a is the LRU
    # image but has a container, so b goes instead.
    body = CACHE + (step("run", "a:1", extra="run_s = 100\n") + step("pull", "b:1", at_s=10)
                    + step("pull", "c:1", at_s=20))
    rows, w = run(world(body))
    assert w.daemons["n"].store.images() == ("a:1", "c:1")


def test_images_cached_at_time_zero_are_hits():
    body = ('[[node]]\nname = "n"\ncached = ["a:1"]\n' + image("a:1", ("l", 10))
            + step("run", "a:1"))
    rows, _ = run(world(body))
    assert not [r for r in rows if r.phase in ("pull", "download")]


# -- workloads, ids and replications ---------------------------------------------------------

def test_one_client_per_node_and_unique_request_ids():
    body = ('[[node]]\nname = "w"\ncount = 3\n' + image("a:1", ("l", 1))
            + step("run", "a:1", node="w-*", extra="clients = 2\n"))
    rows = simulate(world(body, replications=2), costs=FREE)
    requests = {(r.replication, r.request, r.node) for r in rows if r.phase == "request"}
    assert len(requests) == 12
    # client c of the step is the (c mod 2)-th client on node c // 2
    for _, request, node in requests:
        _, client, _ = parse_request_id(request)
        assert node == f"w-{client // 2}"


def test_poisson_arrivals_and_zipf_popularity():
    refs = [f"i{k}:1" for k in range(5)]
    body = ("".join(image(ref, (f"l{k}", 1)) for k, ref in enumerate(refs))
            + '[[step]]\ncommand = "pull"\nimages = ["i*"]\npopularity = "zipf"\n'
              'zipf_s = 1.0\narrivals = "poisson"\nrate_per_s = 2.0\nduration_s = 500\n')
    rows = simulate(world(body, replications=2), costs=FREE)
    metrics = request_metrics(rows)
    per_rep = [sum(1 for (rep, _) in metrics if rep == i) for i in (0, 1)]
    # about rate x duration = 1000 each (sd ~32), and independent between replications
    assert all(850 < n < 1150 for n in per_rep) and per_rep[0] != per_rep[1]
    counts = [sum(1 for m in metrics.values() if m["image"] == ref) for ref in refs]
    # Zipf s = 1: P(k) = (1/k) / H_5, H_5 = 2.2833: 43.8 %, 21.9 %, 14.6 %, 10.9 %, 8.8 %
    share = counts[0] / sum(counts)
    assert 0.40 < share < 0.48 and counts == sorted(counts, reverse=True)
    assert simulate(world(body), costs=FREE) == simulate(world(body), costs=FREE)


# -- the summary's distribution of each metric ----------------------------------------------

def test_metric_statistics_by_hand():
    from vocab.trace import metric_statistics
    # Pooled: 1, 2, 3, 4, 10 -> median 3; p95 at position 0.95 * 4 = 3.8: 4 + 0.8 * 6 = 8.8.
    # Replication means 2 and 16/3: centre 11/3, sd = (16/3 - 2) / sqrt 2, t(0.975, 1) = 12.706,
    # half width 12.706 * sd / sqrt 2 = 12.706 * (10/3) / 2 = 21.176667.
    stats = metric_statistics({0: [1.0, 3.0], 1: [2.0, 4.0, 10.0]})
    assert (stats["count"], stats["median"], stats["p95"]) == (5, 3.0, 8.8)
    assert stats["mean"] == 4.0
    assert stats["ci95"] == pytest.approx([11 / 3 - 21.176667, 11 / 3 + 21.176667], abs=1e-6)
    assert metric_statistics({0: [1.0]})["ci95"] is None


def test_the_cli_runs_a_cluster_scenario(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from vocab.trace import read_csv
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, str(root / "simulate.py"), "run",
                             "scenarios/rate-limited.toml", "--out", str(tmp_path)],
                            capture_output=True, text=True, cwd=root, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = read_csv(tmp_path / "trace.csv")
    assert {r.node for r in rows} == {f"node-{i}" for i in range(50)}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["requests"]) == 50
    total = summary["metrics"]["total_s"]
    assert total["count"] == 50 and total["median"] <= total["p95"]
