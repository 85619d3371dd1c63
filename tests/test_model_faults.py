"""The model's registry faults, solved by hand, and the `[registry] faults` key.

The world: one 10 MB layer (random data: 10**7 bytes on the wire) over an
80 Mbit/s link (10**7 B/s, so the body takes 1 s), round trips of 100 ms,
a registry that answers at once, every other cost zero (``Costs.free``), a
back-off of 1 s x the failures so far and a read timeout of 3 s.  With
``max_faults = 1`` and one rate at 1.0 the first blob GET, and only that one,
meets the fault; where in the body it strikes (a random draw) moves no total,
because a Range resume sends each remaining byte once.
"""
from __future__ import annotations

import random

import pytest

from model import Costs
from model.simulation import simulate_replication, stream
from vocab.faults import (KINDS, RATE_KEYS, FaultDraws, RegistryFaults, fault_rng, faults_spec,
                          parse_faults_spec)
from vocab.scenario import parse_scenario
from vocab.schema import ScenarioError

FREE = Costs.free()
BODY_S = 1.0      # 10**7 bytes at 10**7 B/s
RTT_S = 0.1
BACKOFF_S = 1.0
TIMEOUT_S = 3.0


def world(faults: str, layers: str = '{ name = "l", size_mb = 10 }', command: str = "pull") -> object:
    return parse_scenario(f"""
[scenario]
name = "faults"
seed = 3
[network]
bandwidth_mbps = 80
rtt_ms = 100
[daemon]
retry_backoff_s = {BACKOFF_S}
read_timeout_s = {TIMEOUT_S}
[registry]
request_ms = 0
faults = {{ {faults} }}
[[image]]
ref = "a:1"
layers = [{layers}]
[[step]]
command = "{command}"
image = "a:1"
""", "test")


def run(scenario):
    worlds: list = []
    rows = simulate_replication(scenario, 0, scenario.seed, FREE, worlds)
    return rows, worlds[0]


def download(rows, layer: str = "l"):
    (row,) = [r for r in rows if r.phase == "download" and r.layer == layer]
    return row


def once(kind: str, extra: str = "") -> str:
    return f"{RATE_KEYS[kind]} = 1.0, max_faults = 1" + (f", {extra}" if extra else "")


# -- each fault kind, by hand ------------------------------------------------------------

@pytest.mark.parametrize("faults, expected_s, wire_bytes", [
    # no fault: one round trip and the body
    ("", RTT_S + BODY_S, 10**7),
    # 503: its round trip, 1 x back-off, then the whole GET
    (once("503"), RTT_S + BACKOFF_S + RTT_S + BODY_S, 10**7),
    # 429: its round trip, Retry-After (not the back-off), then the GET
    (once("429", "retry_after_s = 0.5"), RTT_S + 0.5 + RTT_S + BODY_S, 10**7),
    # a stall shorter than the read timeout: the body and 2 s of silence
    (once("stall", "stall_s = 2"), RTT_S + BODY_S + 2.0, 10**7),
    # a stall the timeout gives up on: part f, 3 s timeout, back-off, resume (1 - f)
    (once("stall", "stall_s = 4"), RTT_S + TIMEOUT_S + BACKOFF_S + RTT_S + BODY_S, 10**7),
    # a cut: part f, back-off, resume the rest with Range
    (once("cut"), RTT_S + BACKOFF_S + RTT_S + BODY_S, 10**7),
    # a flipped byte: the whole body, digest mismatch, back-off, the whole body again
    (once("flip"), RTT_S + BODY_S + BACKOFF_S + RTT_S + BODY_S, 2 * 10**7),
    # a drip at 8000 kbit/s = 10**6 B/s: ten times slower than the link
    (once("drip", "drip_kbps = 8000"), RTT_S + 10 * BODY_S, 10**7),
    # a drip faster than the link changes nothing
    (once("drip", "drip_kbps = 800000"), RTT_S + BODY_S, 10**7),
], ids=["none", "503", "429", "stall-short", "stall-timeout", "cut", "flip", "drip", "drip-fast"])
def test_each_fault_costs_what_the_client_does_about_it(faults, expected_s, wire_bytes):
    rows, w = run(world(faults))
    row = download(rows)
    assert row.end_s - row.start_s == pytest.approx(expected_s)
    assert row.bytes == wire_bytes
    assert w.registry.faults.injected == (1 if faults else 0)
    (pull,) = [r for r in rows if r.phase == "pull"]
    # resolve: three round trips before the download; the layer is registered after it
    assert pull.end_s - pull.start_s == pytest.approx(3 * RTT_S + expected_s)
    assert [r.layer for r in rows if r.phase == "extract"] == ["l"]


def test_a_permanent_503_gives_up_after_five_attempts():
    # 5 round trips and back-offs of 1, 2, 3 and 4 s between them: 10.5 s; nothing stored
    rows, w = run(world("error_503_rate = 1.0", command="run"))
    row = download(rows)
    assert row.end_s - row.start_s == pytest.approx(5 * RTT_S + 10 * BACKOFF_S)
    assert w.registry.faults.counts["503"] == 5 and row.bytes == 0
    assert not [r for r in rows if r.phase in ("extract", "create", "start")]


def test_permanent_429s_wait_retry_after_each_time():
    rows, w = run(world("rate_limit_429_rate = 1.0, retry_after_s = 0.5"))
    row = download(rows)
    assert row.end_s - row.start_s == pytest.approx(5 * RTT_S + 4 * 0.5)
    assert w.registry.faults.counts["429"] == 5


def test_two_cuts_then_success_resume_each_time():
    # max_faults = 2: cut, cut, then the rest: back-offs of 1 and 2 s, three round trips
    rows, w = run(world("cut_rate = 1.0, max_faults = 2"))
    row = download(rows)
    assert row.end_s - row.start_s == pytest.approx(3 * RTT_S + (1 + 2) * BACKOFF_S + BODY_S)
    assert row.bytes == 10**7 and w.registry.faults.counts["cut"] == 2


def test_a_dripping_layer_yields_the_rest_of_the_link_to_another():
    # Two 10 MB layers share the link; the first GET (bottom layer "a") drips at
    # 2 * 10**6 B/s, so max-min gives "b" the other 8 * 10**6 B/s: b ends after
    # 1.25 s, a after 5 s.
    rows, _ = run(world(once("drip", "drip_kbps = 16000"),
                        '{ name = "a", size_mb = 10 }, { name = "b", size_mb = 10 }'))
    a, b = download(rows, "a"), download(rows, "b")
    assert a.end_s - a.start_s == pytest.approx(RTT_S + 5.0)
    assert b.end_s - b.start_s == pytest.approx(RTT_S + 1.25)


def test_the_same_seed_gives_the_same_faults_and_rows():
    scenario = world("error_503_rate = 0.2, cut_rate = 0.2, flip_rate = 0.1, stall_rate = 0.1, "
                     "stall_s = 0.5",
                     ", ".join(f'{{ name = "l{i}", size_mb = 2 }}' for i in range(8)))
    first, w1 = run(scenario)
    again, w2 = run(scenario)
    assert first == again and w1.registry.faults.counts == w2.registry.faults.counts
    assert w1.registry.faults.injected > 0
    other, _ = run(scenario.with_seed(4))
    assert other != first


# -- the draws -------------------------------------------------------------------------

def test_the_real_registry_draws_from_the_models_stream():
    assert fault_rng(11, 2).random() == stream(11, 2, "registry").random()
    faults = RegistryFaults(error_503_rate=0.3, cut_rate=0.3, flip_rate=0.2)
    model_side = FaultDraws(faults, stream(5, 0, "registry"))
    registry_side = FaultDraws(faults, fault_rng(5))
    assert [model_side.next() for _ in range(200)] == [registry_side.next() for _ in range(200)]


def test_draws_follow_the_rates():
    rates = {"503": 0.1, "429": 0.05, "stall": 0.05, "cut": 0.2, "flip": 0.1, "drip": 0.1}
    faults = RegistryFaults(**{RATE_KEYS[k]: v for k, v in rates.items()})
    draws = FaultDraws(faults, random.Random(1))
    n = 40_000
    drawn = [draws.next() for _ in range(n)]
    for kind in KINDS:
        share = draws.counts[kind] / n
        assert share == pytest.approx(rates[kind], abs=0.01), kind
        # where a body fault strikes is uniform over the body
        if kind in ("stall", "cut", "flip"):
            ats = [f.at for f in drawn if f is not None and f.kind == kind]
            assert 0.45 < sum(ats) / len(ats) < 0.55
    assert sum(f is None for f in drawn) / n == pytest.approx(0.4, abs=0.01)


def test_max_faults_caps_the_draws():
    draws = FaultDraws(RegistryFaults(cut_rate=1.0, max_faults=3), random.Random(0))
    assert [d.kind if d else None for d in (draws.next() for _ in range(5))] == \
        ["cut", "cut", "cut", None, None]


# -- the scenario key and the --faults text ---------------------------------------------

def test_the_older_names_are_aliases():
    s = parse_scenario('[scenario]\nname = "x"\n[registry]\nerror_rate = 0.1\nreset_rate = 0.2\n'
                       '[[image]]\nref = "a:1"\nlayers = [{ name = "l", size_mb = 1 }]\n'
                       '[[step]]\ncommand = "pull"\nimage = "a:1"\n', "t.toml")
    assert s.registry.faults == RegistryFaults(error_503_rate=0.1, cut_rate=0.2)


@pytest.mark.parametrize("registry, expected", [
    ("faults = { stall_s = -1 }", "t.toml: registry.faults.stall_s: must be greater than 0, not -1.0"),
    ("faults = { cut_rate = 1.5 }", "t.toml: registry.faults.cut_rate: must be between 0 and 1, not 1.5"),
    ("faults = { cut_rate = \"often\" }", "t.toml: registry.faults.cut_rate: must be a number"),
    ("faults = { cut_rte = 0.1 }", "t.toml: registry.faults.cut_rte: unknown key (expected one of:"),
    ("faults = { cut_rate = 0.6, flip_rate = 0.6 }",
     "t.toml: registry.faults: the rates add up to 1.2 (cut_rate = 0.6, flip_rate = 0.6)"),
    ("faults = { max_faults = -1 }", "t.toml: registry.faults.max_faults: must not be negative"),
    ("faults = 3", "t.toml: registry.faults: must be a table"),
    ("error_rate = 0.1\nfaults = { error_503_rate = 0.1 }",
     "t.toml: registry.faults.error_503_rate: given twice (once under its older name)"),
])
def test_bad_fault_keys_give_one_line_naming_the_key(registry, expected):
    with pytest.raises(ScenarioError) as error:
        parse_scenario(f'[scenario]\nname = "x"\n[registry]\n{registry}\n'
                       '[[image]]\nref = "a:1"\nlayers = [{ name = "l", size_mb = 1 }]\n'
                       '[[step]]\ncommand = "pull"\nimage = "a:1"\n', "t.toml")
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)


def test_daemon_retry_keys_are_checked():
    with pytest.raises(ScenarioError, match="daemon.read_timeout_s: must be greater than 0"):
        parse_scenario('[scenario]\nname = "x"\n[daemon]\nread_timeout_s = 0\n'
                       '[[image]]\nref = "a:1"\nlayers = [{ name = "l", size_mb = 1 }]\n'
                       '[[step]]\ncommand = "pull"\nimage = "a:1"\n', "t.toml")


def test_the_flag_text_round_trips(tmp_path):
    faults = RegistryFaults(error_503_rate=0.1, stall_rate=0.2, stall_s=0.3, max_faults=4)
    assert parse_faults_spec(faults_spec(faults)) == faults
    assert parse_faults_spec("") == RegistryFaults()
    (tmp_path / "f.toml").write_text("cut_rate = 0.25\n")
    assert parse_faults_spec(str(tmp_path / "f.toml")) == RegistryFaults(cut_rate=0.25)
    for text, expected in [("cut_rate", "--faults: 'cut_rate' is not KEY=VALUE"),
                           ("cut_rate=lots", "--faults: cut_rate: 'lots' is not a number"),
                           ("stall_s=0", "--faults: faults.stall_s: must be greater than 0"),
                           (str(tmp_path / "none.toml"), "--faults: " + str(tmp_path / "none.toml")
                            + ": no such file")]:
        with pytest.raises(ScenarioError) as error:
            parse_faults_spec(text)
        assert str(error.value).startswith(expected)
