"""The model on small worlds whose timings are solved by hand in the comments.

Costs are ``Costs.free(...)``: every fixed cost zero and every rate infinite
except what a test is about, so each expected number is a line of arithmetic.
80 Mbit/s = 10**7 B/s, so 10 MB of random data (compression 1) takes 1.0 s alone.
"""
from __future__ import annotations

import pytest

from model import Costs, simulate
from vocab.scenario import Scenario, parse_scenario
from vocab.trace import PHASES, request_metrics, summarize

# -- small worlds, written as TOML the way a user would ---------------------------


def layer(name: str, size_mb: float, compression: float = 1.0) -> str:
    return f'{{ name = "{name}", size_mb = {size_mb}, compression = {compression} }}'


def image(ref: str, *layers: str) -> str:
    return f'[[image]]\nref = "{ref}"\nlayers = [{", ".join(layers)}]\n'


def step(command: str, ref: str, at_s: float = 0.0, clients: int = 1, repeat: int = 1,
         run_s: float = 0.0) -> str:
    return (f'[[step]]\nat_s = {at_s}\ncommand = "{command}"\nimage = "{ref}"\n'
            f'clients = {clients}\nrepeat = {repeat}\nrun_s = {run_s}\n')


def world(*blocks: str, bandwidth_mbps: float | None = 80, rtt_ms: float = 0,
          max_concurrent_downloads: int = 3, replications: int = 1, seed: int = 7) -> Scenario:
    bandwidth = "" if bandwidth_mbps is None else f"bandwidth_mbps = {bandwidth_mbps}\n"
    text = (f'[scenario]\nname = "t"\nseed = {seed}\nreplications = {replications}\n'
            f'[network]\n{bandwidth}rtt_ms = {rtt_ms}\n'
            f'[daemon]\nmax_concurrent_downloads = {max_concurrent_downloads}\n'
            + "\n".join(blocks))
    return parse_scenario(text, "test")


def phase_rows(rows, phase: str, request: str | None = None, layer: str | None = None):
    return [r for r in rows if r.phase == phase
            and (request is None or r.request == request)
            and (layer is None or r.layer == layer)]


def one(rows, phase: str, request: str = "s0-c0-r0", layer: str | None = None):
    found = phase_rows(rows, phase, request, layer)
    assert len(found) == 1, (phase, request, layer, found)
    return found[0]


FREE = Costs.free()
EPS = 1e-9


def close(value: float, expected: float) -> bool:
    return value == pytest.approx(expected, abs=EPS)


def span(row) -> tuple[float, float]:
    return (round(row.start_s, 9), round(row.end_s, 9))


# -- the link ----------------------------------------------------------------

def test_one_layer_downloads_in_size_over_bandwidth():
    # 10 MB / 10**7 B/s = 1.0 s; rtt 0 and free costs: resolve is instantaneous.
    rows = simulate(world(image("a:1", layer("l", 10)), step("pull", "a:1")), costs=FREE)
    download = one(rows, "download")
    assert span(download) == (0.0, 1.0)
    assert download.bytes == 10_000_000 and download.layer == "l"
    assert span(one(rows, "pull")) == (0.0, 1.0)
    assert span(one(rows, "request")) == (0.0, 1.0)


def test_rtt_adds_three_resolve_round_trips_and_one_per_blob():
    # resolve = 3 x 0.1 s = 0.3 s; the blob GET: 0.1 s round trip then 1.0 s of bytes.
    rows = simulate(world(image("a:1", layer("l", 10)), step("pull", "a:1"), rtt_ms=100),
                    costs=FREE)
    assert span(one(rows, "resolve")) == (0.0, 0.3)
    download = one(rows, "download")
    assert span(download) == (0.3, 1.4)
    assert close(download.duration_s, 0.1 + 1.0)


def test_registry_request_cost_is_paid_per_request():
    # Each of the 4 registry requests costs rtt 0.01 + 0.005: resolve 0.045, blob GET 0.015.
    rows = simulate(world(image("a:1", layer("l", 10)), step("pull", "a:1"), rtt_ms=10),
                    costs=Costs.free(registry_request_s=0.005))
    assert span(one(rows, "resolve")) == (0.0, 0.045)
    assert span(one(rows, "download")) == (0.045, 1.06)


def test_two_equal_layers_share_the_link():
    # Processor sharing: 2 x 10 MB at 5*10**6 B/s each -> both end at 2.0 s.
    rows = simulate(world(image("a:1", layer("x", 10), layer("y", 10)), step("pull", "a:1")),
                    costs=FREE)
    assert [span(r) for r in phase_rows(rows, "download")] == [(0.0, 2.0), (0.0, 2.0)]


def test_unequal_layers_share_then_the_survivor_speeds_up():
    # 5 MB and 10 MB at 5*10**6 B/s each: the small one ends at 1.0 s; the big one
    # has 5 MB left, now alone at 10**7 B/s: 0.5 s more -> 1.5 s.
    rows = simulate(world(image("a:1", layer("small", 5), layer("big", 10)), step("pull", "a:1")),
                    costs=FREE)
    assert span(one(rows, "download", layer="small")) == (0.0, 1.0)
    assert span(one(rows, "download", layer="big")) == (0.0, 1.5)


def test_unlimited_link_uses_the_loopback_rate():
    # bandwidth_mbps absent: 10 MB at unlimited_link_Bps 2*10**7 -> 0.5 s.
    rows = simulate(world(image("a:1", layer("l", 10)), step("pull", "a:1"), bandwidth_mbps=None),
                    costs=Costs.free(unlimited_link_Bps=2e7))
    assert span(one(rows, "download")) == (0.0, 0.5)


# -- download slots and extraction order --------------------------------------

def test_fourth_layer_waits_for_a_download_slot():
    # 3 slots: l0..l2 share the link, 10 MB each at 10**7/3 B/s -> all end at 3.0 s.
    # l3 gets the first free slot at 3.0 s and then has the link alone: 1.0 s.
    layers = [layer(f"l{i}", 10) for i in range(4)]
    rows = simulate(world(image("a:1", *layers), step("pull", "a:1"), max_concurrent_downloads=3),
                    costs=FREE)
    downloads = {r.layer: span(r) for r in phase_rows(rows, "download")}
    assert downloads == {"l0": (0.0, 3.0), "l1": (0.0, 3.0), "l2": (0.0, 3.0), "l3": (3.0, 4.0)}


def test_slots_are_granted_bottom_layer_first():
    # 1 slot: strictly one after another, in manifest order: 0.5 s, then 1.0 s, then 0.2 s.
    rows = simulate(world(image("a:1", layer("a", 5), layer("b", 10), layer("c", 2)),
                          step("pull", "a:1"), max_concurrent_downloads=1), costs=FREE)
    downloads = {r.layer: span(r) for r in phase_rows(rows, "download")}
    assert downloads == {"a": (0.0, 0.5), "b": (0.5, 1.5), "c": (1.5, 1.7)}


def test_extraction_is_strictly_bottom_to_top():
    # Bottom 10 MB, top 1 MB, extraction at 10**7 B/s.  Downloads share the link:
    # top done at 1 MB / 5*10**6 = 0.2 s; bottom has 9 MB left alone -> 1.1 s.
    # Bottom extracts 1.1 -> 2.1 s; top waits for it (not from 0.2 s): 2.1 -> 2.2 s.
    costs = Costs.free(extract_random_Bps=1e7)
    rows = simulate(world(image("a:1", layer("bottom", 10), layer("top", 1)), step("pull", "a:1")),
                    costs=costs)
    assert span(one(rows, "download", layer="top")) == (0.0, 0.2)
    assert span(one(rows, "download", layer="bottom")) == (0.0, 1.1)
    assert span(one(rows, "extract", layer="bottom")) == (1.1, 2.1)
    assert span(one(rows, "extract", layer="top")) == (2.1, 2.2)
    assert one(rows, "extract", layer="top").bytes == 1_000_000
    assert span(one(rows, "pull")) == (0.0, 2.2)


def test_extraction_of_lower_layers_overlaps_later_downloads():
    # Two layers of 10 MB content, compression 2: 5 MB on the wire, 0.5 s each; 1 slot,
    # so a downloads 0 -> 0.5 s and b 0.5 -> 1.0 s.  Extraction with only the random
    # rate finite: 1/rate = (1/10**7)/2 -> 2*10**7 B/s, so 10 MB take 0.5 s + 0.1 s
    # fixed.  a extracts 0.5 -> 1.1 s while b downloads; b waits for a: 1.1 -> 1.7 s.
    # The pull ends pull_fixed 0.05 s after the last registration: 1.75 s.
    costs = Costs.free(extract_random_Bps=1e7, extract_fixed_s=0.1, pull_fixed_s=0.05)
    rows = simulate(world(image("a:1", layer("a", 10, 2), layer("b", 10, 2)),
                          step("pull", "a:1"), max_concurrent_downloads=1), costs=costs)
    assert span(one(rows, "download", layer="a")) == (0.0, 0.5)
    assert span(one(rows, "extract", layer="a")) == (0.5, 1.1)
    assert span(one(rows, "download", layer="b")) == (0.5, 1.0)
    assert span(one(rows, "extract", layer="b")) == (1.1, 1.7)
    assert span(one(rows, "pull")) == (0.0, 1.75)
    assert one(rows, "download", layer="a").bytes == 5_000_000
    assert one(rows, "extract", layer="a").bytes == 10_000_000


def test_extract_rate_interpolates_between_random_and_compressible():
    costs = Costs(extract_random_Bps=400e6, extract_compressible_Bps=1.2e9, extract_fixed_s=0.002)
    assert costs.extract_Bps(1.0) == pytest.approx(400e6)
    # c = 2: 1/r = 1/1.2e9 + (1/400e6 - 1/1.2e9)/2 = (1 + 1)/1.2e9 -> 600e6 B/s
    assert costs.extract_Bps(2.0) == pytest.approx(600e6)
    assert costs.extract_Bps(1e9) == pytest.approx(1.2e9, rel=1e-6)
    assert costs.extract_s(600_000_000, 2.0) == pytest.approx(0.002 + 1.0)


# -- sharing layers between images and pulls -----------------------------------

def test_shared_layer_is_already_there_for_the_second_image():
    # a:1 = base + a; b:1 = base + b.  b:1 is pulled after a:1 is complete,
    # so only its own layer is downloaded: 10 MB -> 1.0 s after 5.0 s.
    rows = simulate(world(image("a:1", layer("base", 10), layer("a", 10)),
                          image("b:1", layer("base", 10), layer("b", 10)),
                          step("pull", "a:1"), step("pull", "b:1", at_s=5)), costs=FREE)
    assert [r.layer for r in phase_rows(rows, "download", "s1-c0-r0")] == ["b"]
    assert [r.layer for r in phase_rows(rows, "extract", "s1-c0-r0")] == ["b"]
    assert span(one(rows, "pull", "s1-c0-r0")) == (5.0, 6.0)
    assert len(phase_rows(rows, "download", layer="base")) == 1


def test_concurrent_pulls_of_one_image_download_each_layer_once():
    # Two clients at once: client 0's pull fetches both layers (2 x 10 MB sharing
    # the link -> 2.0 s); client 1's pull waits on those transfers, no rows of its own.
    rows = simulate(world(image("a:1", layer("x", 10), layer("y", 10)),
                          step("pull", "a:1", clients=2)), costs=FREE)
    downloads = phase_rows(rows, "download")
    assert sorted(r.layer for r in downloads) == ["x", "y"]
    assert {r.request for r in downloads} == {"s0-c0-r0"}
    assert phase_rows(rows, "download", "s0-c1-r0") == []
    assert phase_rows(rows, "extract", "s0-c1-r0") == []
    assert span(one(rows, "pull", "s0-c0-r0")) == (0.0, 2.0)
    assert span(one(rows, "pull", "s0-c1-r0")) == (0.0, 2.0)


def test_concurrent_pulls_of_images_sharing_a_base_share_its_transfer():
    # a:1 = base + a, b:1 = base + b, both at 0 with 3 slots.  Client of a:1 (step 0)
    # starts base and a; b:1 starts only b.  3 flows of 10 MB: all end at 3.0 s.
    rows = simulate(world(image("a:1", layer("base", 10), layer("a", 10)),
                          image("b:1", layer("base", 10), layer("b", 10)),
                          step("pull", "a:1"), step("pull", "b:1")), costs=FREE)
    assert sorted(r.layer for r in phase_rows(rows, "download", "s0-c0-r0")) == ["a", "base"]
    assert [r.layer for r in phase_rows(rows, "download", "s1-c0-r0")] == ["b"]
    assert all(span(r) == (0.0, 3.0) for r in phase_rows(rows, "download"))
    assert span(one(rows, "pull", "s1-c0-r0")) == (0.0, 3.0)


def test_concurrent_runs_both_pull_and_share_the_layers():
    rows = simulate(world(image("a:1", layer("x", 10)), step("run", "a:1", clients=2)),
                    costs=FREE)
    assert len(phase_rows(rows, "pull")) == 2
    assert len(phase_rows(rows, "download")) == 1
    assert len(phase_rows(rows, "create")) == 2 and len(phase_rows(rows, "remove")) == 2


# -- containers, the cache and rmi ----------------------------------------------

A_S = 0.002  # one API round trip in the container tests
CONTAINER_COSTS = Costs.free(api_call_s=A_S, create_s=0.004, start_s=0.012,
                             exit_s=0.001, remove_s=0.006)


def test_second_run_is_the_sum_of_fixed_costs():
    # Cached image: create (a + 0.004), inspect (a), start (a + 0.012), logs (a),
    # inspect again (a), wait (a: the process exited 0.001 s after exec, before
    # the wait arrived 3a later), delete (a + 0.006) = 7a + 0.022 = 0.036 s.  Exec happens 2.5a + 0.016
    # = 0.021 s after sending.  No pull row, pull_s 0.
    rows = simulate(world(image("a:1", layer("l", 10)), step("run", "a:1", repeat=2)),
                    costs=CONTAINER_COSTS)
    assert phase_rows(rows, "pull", "s0-c0-r1") == []
    metrics = request_metrics(rows)[(0, "s0-c0-r1")]
    assert close(metrics["total_s"], 7 * A_S + 0.004 + 0.012 + 0.006)
    assert close(metrics["startup_s"], 2.5 * A_S + 0.004 + 0.012)
    assert metrics["pull_s"] == 0.0
    sent = one(rows, "request", "s0-c0-r1").start_s
    assert close(one(rows, "create", "s0-c0-r1").start_s - sent, A_S / 2)
    assert close(one(rows, "run", "s0-c0-r1").duration_s, 0.001)


def test_a_long_run_hides_the_calls_made_while_it_runs():
    # run_s 1.0: the wait is answered a/2 after the exit the daemon sees at
    # exec + 1.0 + 0.001, so total = create (a + 0.004) + inspect (a) + start
    # (a/2 + 0.012) + 1.001 + a/2 + delete (a + 0.006) = 4a + 1.023 = 1.031 s.
    rows = simulate(world(image("a:1", layer("l", 10)), step("run", "a:1", repeat=2, run_s=1)),
                    costs=CONTAINER_COSTS)
    assert close(one(rows, "request", "s0-c0-r1").duration_s, 4 * A_S + 1.023)
    assert close(one(rows, "run", "s0-c0-r1").duration_s, 1.001)


def test_start_answer_delays_the_calls_after_the_exec_not_the_exec():
    # start_answer 0.003: the start call answers 0.003 after the exec, so the
    # calls after it all move 0.003 later: total = 7a + 0.022 + 0.003 = 0.039 s;
    # the exec still comes 2.5a + 0.016 = 0.021 s after sending, and the
    # process runs meanwhile: its run phase is still 0.001.
    rows = simulate(world(image("a:1", layer("l", 10)), step("run", "a:1", repeat=2)),
                    costs=CONTAINER_COSTS.with_(start_answer_s=0.003))
    metrics = request_metrics(rows)[(0, "s0-c0-r1")]
    assert close(metrics["total_s"], 7 * A_S + 0.022 + 0.003)
    assert close(metrics["startup_s"], 2.5 * A_S + 0.004 + 0.012)
    assert close(one(rows, "run", "s0-c0-r1").duration_s, 0.001)
    exec_s = one(rows, "start", "s0-c0-r1").end_s
    # start's answer (0.003 + a/2), logs, inspect, wait (a/2 in, a/2 out), delete's a/2 in
    assert close(one(rows, "remove", "s0-c0-r1").start_s - exec_s, 0.003 + 4 * A_S)


def test_cold_run_metrics_by_hand():
    # One layer, 10 MB content at compression 2 (5 MB on the wire), 80 Mbit/s, rtt 20 ms.
    # a = 0.002, registry_request 0.001 -> each registry request 0.021 s.
    # t=0      POST create -> 404 at 0.002
    # 0.002    POST /images/create, the daemon starts pulling at 0.003
    #          resolve 3 x 0.021 = 0.063 -> 0.066; blob GET 0.021 -> 0.087; 5 MB / 10**7 = 0.5 -> 0.587
    #          extract 0.01 + 10 MB / 2*10**8 B/s (random rate 10**8, compression 2) = 0.06 -> 0.647
    #          pull_fixed 0.005 -> 0.652: pull_s = 0.652 - 0.003 = 0.649; answer at 0.653
    # 0.653    GET image -> 0.655; POST create -> 0.661; GET container -> 0.663
    # 0.663    POST start: exec at 0.664 + 0.012 = 0.676 = startup_s; answer 0.677
    # 0.677    logs -> 0.679; inspect -> 0.681; wait (exit seen 0.677) -> 0.683
    # 0.683    delete: the daemon removes at 0.684 + 0.006 = 0.690; answer 0.691
    costs = Costs.free(api_call_s=0.002, registry_request_s=0.001, extract_random_Bps=1e8,
                       extract_fixed_s=0.01, pull_fixed_s=0.005, create_s=0.004,
                       start_s=0.012, exit_s=0.001, remove_s=0.006)
    scenario = world(image("a:1", layer("l", 10, 2)), step("run", "a:1"), rtt_ms=20,
                     replications=2)
    all_rows = simulate(scenario, costs=costs)
    rows = [r for r in all_rows if r.replication == 1]
    assert span(one(rows, "resolve")) == (0.003, 0.066)
    assert span(one(rows, "download")) == (0.066, 0.587)
    assert span(one(rows, "extract")) == (0.587, 0.647)
    assert span(one(rows, "pull")) == (0.003, 0.652)
    assert span(one(rows, "create")) == (0.656, 0.66)
    assert span(one(rows, "start")) == (0.664, 0.676)
    assert span(one(rows, "run")) == (0.676, 0.677)
    assert span(one(rows, "remove")) == (0.684, 0.69)
    summary = summarize(all_rows, scenario.name, "sim", "model", scenario.replications)
    (request,) = summary["requests"]
    assert (request["pull_s"], request["startup_s"], request["total_s"]) == (0.649, 0.676, 0.691)


def test_rmi_then_run_pulls_again():
    rows = simulate(world(image("a:1", layer("x", 10), layer("y", 10)),
                          step("run", "a:1"), step("rmi", "a:1", at_s=10),
                          step("run", "a:1", at_s=20)), costs=FREE)
    assert [r.phase for r in rows if r.request == "s1-c0-r0"] == ["request"]
    assert sorted(r.layer for r in phase_rows(rows, "download", "s2-c0-r0")) == ["x", "y"]
    # Same download as the first time: 2 x 10 MB sharing the link, 2.0 s.
    assert span(one(rows, "pull", "s2-c0-r0")) == (20.0, 22.0)


def test_rmi_costs_one_call_plus_its_work():
    rows = simulate(world(image("a:1", layer("x", 10)), step("pull", "a:1"),
                          step("rmi", "a:1", at_s=10), step("rmi", "a:1", at_s=20)),
                    costs=Costs.free(api_call_s=0.002, rmi_s=0.003))
    assert close(one(rows, "request", "s1-c0-r0").duration_s, 0.005)
    assert close(one(rows, "request", "s2-c0-r0").duration_s, 0.002)  # 404: nothing to do


def test_rmi_keeps_layers_another_image_uses():
    # After rmi a:1, base stays (b:1 uses it): pulling a:1 again fetches only "a".
    rows = simulate(world(image("a:1", layer("base", 10), layer("a", 10)),
                          image("b:1", layer("base", 10), layer("b", 10)),
                          step("pull", "a:1"), step("pull", "b:1", at_s=5),
                          step("rmi", "a:1", at_s=10), step("pull", "a:1", at_s=15)),
                    costs=FREE)
    assert [r.layer for r in phase_rows(rows, "download", "s3-c0-r0")] == ["a"]


def test_rmi_of_an_image_in_use_is_refused():
    # The container runs 0 -> 5 s; rmi at 3 s gets 409, so the run at 10 s finds the image.
    rows = simulate(world(image("a:1", layer("x", 10)), step("run", "a:1", run_s=5),
                          step("rmi", "a:1", at_s=3), step("run", "a:1", at_s=10)), costs=FREE)
    assert phase_rows(rows, "pull", "s2-c0-r0") == []


def test_pull_of_a_present_image_still_resolves():
    # Second pull: resolve 3 x 0.05 s = 0.15 s, no layers, then pull_fixed 0.01 s.
    rows = simulate(world(image("a:1", layer("x", 10)), step("pull", "a:1", repeat=2),
                          rtt_ms=50), costs=Costs.free(pull_fixed_s=0.01))
    second = [r for r in rows if r.request == "s0-c0-r1"]
    assert sorted(r.phase for r in second) == ["pull", "request", "resolve"]
    assert close(one(rows, "resolve", "s0-c0-r1").duration_s, 0.15)
    assert close(one(rows, "pull", "s0-c0-r1").duration_s, 0.16)


# -- the rows themselves ------------------------------------------------------------

def _busy_world(replications: int = 1):
    return world(image("lecture/hello", layer("base", 3, 2.5), layer("app", 20)),
                 image("b:1", layer("base", 3, 2.5), layer("b", 7, 3)),
                 step("run", "lecture/hello", clients=3, repeat=2, run_s=0.5),
                 step("pull", "b:1", at_s=0.1, clients=2),
                 step("rmi", "b:1", at_s=5),
                 step("run", "b:1", at_s=6),
                 bandwidth_mbps=100, rtt_ms=20, replications=replications)


def test_same_seed_gives_identical_rows():
    scenario = _busy_world(replications=2)
    assert simulate(scenario, seed=3) == simulate(scenario, seed=3)
    assert simulate(scenario) == simulate(scenario, seed=scenario.seed)


def test_every_row_is_well_formed():
    rows = simulate(_busy_world())
    assert rows
    for row in rows:
        assert row.phase in PHASES
        assert row.start_s <= row.end_s
        assert (row.source, row.engine, row.node) == ("sim", "model", "node")
        assert row.image in ("lecture/hello:latest", "b:1")  # normalised refs
        if row.phase == "download":
            assert row.layer and row.bytes is not None
        elif row.phase == "extract":
            assert row.layer and row.bytes is not None
        else:
            assert row.layer == "" and row.bytes is None
    # every request has exactly one request row, and it spans its phases
    for (_, request), _ in request_metrics(rows).items():
        (whole,) = phase_rows(rows, "request", request)
        for row in (r for r in rows if r.request == request):
            assert whole.start_s <= row.start_s and row.end_s <= whole.end_s + EPS


def test_all_replications_are_simulated_from_empty_caches():
    rows = simulate(_busy_world(replications=4))
    assert {r.replication for r in rows} == {0, 1, 2, 3}
    per_replication = [[(r.request, r.phase, r.layer, r.start_s, r.end_s)
                        for r in rows if r.replication == i] for i in range(4)]
    assert all(rep == per_replication[0] for rep in per_replication)
    assert len(phase_rows(rows, "request")) == 4 * (3 * 2 + 2 + 1 + 1)
