"""`--set KEY=VALUE`: overrides edit the raw scenario document before validation."""
from __future__ import annotations

from pathlib import Path

import pytest

from sweep.grid import parse_grid, single_overrides
from vocab.overrides import (apply_overrides, load_overridden, parse_assignment, parse_value,
                             split_values)
from vocab.scenario import load_scenario
from vocab.schema import ScenarioError

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
HELLO = SCENARIOS / "hello.toml"

TWO_STEPS = """
[scenario]
name = "two-steps"

[[image]]
ref = "a:1"
layers = [{ name = "l", size_mb = 1.0 }]

[[step]]
command = "pull"
image = "a:1"

[[step]]
command = "run"
image = "a:1"
clients = 2
"""


@pytest.mark.parametrize("text, value", [
    ("10", 10), ("2.5", 2.5), ("1e3", 1000.0), ("true", True), ('"p2p"', "p2p"),
    ("p2p", "p2p"), ("registry", "registry"), ("lecture/hello:2", "lecture/hello:2"),
    ("'x y'", "x y"), ("[1, 2]", [1, 2]), (" 7 ", 7),
])
def test_values_are_toml_literals_or_bare_words(text, value):
    parsed = parse_value(text, "k")
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("text, problem", [("", "empty value"), ('"open', "not a TOML value"),
                                           ("[1, 2", "not a TOML value")])
def test_bad_values(text, problem):
    with pytest.raises(ScenarioError, match=problem):
        parse_value(text, "k")


def test_values_split_at_commas_outside_quotes_and_brackets():
    assert split_values('1,"a,b",[1,2],x') == ["1", '"a,b"', "[1,2]", "x"]
    assert parse_assignment("network.bandwidth_mbps=10,100,1000") == \
        ("network.bandwidth_mbps", [10, 100, 1000])
    assert parse_assignment("step[1].clients=1,2") == ("step[1].clients", [1, 2])


@pytest.mark.parametrize("text, problem", [
    ("network.rtt_ms", "expected KEY=VALUE"), ("=3", "expected KEY=VALUE"),
    ("network..rtt_ms=3", "not a key like"), ("step[x].clients=1", "not a key like"),
    ("network.rtt_ms=1,1", "given twice"),
])
def test_bad_assignments(text, problem):
    with pytest.raises(ScenarioError, match=problem) as info:
        parse_assignment(text)
    assert str(info.value).startswith("--set ")


def test_grid_and_single_overrides():
    assert parse_grid(["a.b=1,2", "c=x"]) == {"a.b": [1, 2], "c": ["x"]}
    with pytest.raises(ScenarioError, match="given twice"):
        parse_grid(["a.b=1", "a.b=2"])
    assert single_overrides(["network.rtt_ms=5"]) == {"network.rtt_ms": 5}
    with pytest.raises(ScenarioError, match="takes one value"):
        single_overrides(["network.rtt_ms=5,6"])


def test_table_keys_and_missing_tables():
    scenario = load_scenario(HELLO, overrides={"network.bandwidth_mbps": 10, "network.rtt_ms": 0})
    assert scenario.network.bandwidth_mbps == 10.0 and scenario.network.rtt_ms == 0.0
    assert scenario.steps == load_scenario(HELLO).steps
    # three-clients.toml has no [daemon] table: the override creates it
    scenario = load_scenario(SCENARIOS / "three-clients.toml",
                             overrides={"daemon.max_concurrent_downloads": 1})
    assert scenario.daemon.max_concurrent_downloads == 1


def test_arrays_of_tables_every_entry_or_one(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text(TWO_STEPS)
    every = load_scenario(path, overrides={"step.repeat": 3})
    assert [step.repeat for step in every.steps] == [3, 3]
    one = load_scenario(path, overrides={"step[1].clients": 5, "step[0].at_s": 1.5})
    assert [(s.clients, s.at_s) for s in one.steps] == [(1, 1.5), (5, 0.0)]
    nested = load_scenario(path, overrides={"image[0].layers[0].size_mb": 4})
    assert nested.images[0].layers[0].size_mb == 4.0


def test_overrides_do_not_touch_the_document_they_edit():
    doc = {"network": {"rtt_ms": 1}, "step": [{"clients": 1}, {"clients": 2}]}
    out = apply_overrides(doc, {"network.rtt_ms": 9, "step.clients": 4})
    assert doc == {"network": {"rtt_ms": 1}, "step": [{"clients": 1}, {"clients": 2}]}
    assert out == {"network": {"rtt_ms": 9}, "step": [{"clients": 4}, {"clients": 4}]}


@pytest.mark.parametrize("overrides, line", [
    ({"network.bandwidth_mbpx": 1}, "--set network.bandwidth_mbpx=1: unknown key (expected one of: "),
    ({"network.bandwidth_mbps": -5}, "--set network.bandwidth_mbps=-5: must be greater than 0"),
    ({"step.clients": 0}, "--set step.clients=0: must be at least 1, not 0"),
    ({"step.clients": "many"}, "--set step.clients=many: must be an integer, not 'many'"),
    ({"step.command": "bulid"}, "--set step.command=bulid: unknown value 'bulid'"),
    ({"step[3].clients": 1}, "--set step[3].clients: there are only 1 [[step]] entries"),
    ({"network[0].rtt_ms": 1}, "--set network[0].rtt_ms: network is a table, not an array"),
    ({"network.rtt_ms.x": 1}, "--set network.rtt_ms.x: network.rtt_ms is a value, not a table"),
    ({"step[0]": 1}, "--set step[0]: name a key inside the entry"),
    ({"nosuch.count": 100}, "--set nosuch.count=100: nosuch: unknown key"),
    # an indirect failure names the override and the path the loader complained about
    ({"image.ref": "other:1"}, "--set image.ref=other:1: step[0].image: unknown image"),
])
def test_wrong_keys_and_values_name_the_override(overrides, line):
    with pytest.raises(ScenarioError) as info:
        load_scenario(HELLO, overrides=overrides)
    message = str(info.value)
    assert message.startswith(line) and "\n" not in message, message


def test_the_blamed_override_is_the_one_that_fails():
    with pytest.raises(ScenarioError) as info:
        load_scenario(HELLO, overrides={"network.rtt_ms": 5, "step.repeat": -1, "scenario.seed": 2})
    assert str(info.value) == "--set step.repeat=-1: must be at least 1, not -1"


def test_a_broken_file_is_reported_as_the_files_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TWO_STEPS.replace('command = "pull"', 'command = "build"'))
    with pytest.raises(ScenarioError, match=r"bad.toml: step\[0\].command: unknown value 'build'"):
        load_scenario(bad, overrides={"network.rtt_ms": 5})
    bad.write_text("not toml [")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(bad, overrides={"network.rtt_ms": 5})


def test_overrides_know_no_keys_only_documents():
    """A key the loader accepts works though this module never heard of it:
    here a loader that knows a [distribution] table (which the real one may add)."""
    def build(doc):
        mode = doc.get("distribution", {}).get("mode", "registry")
        if mode not in ("registry", "p2p"):
            raise ScenarioError(f"s.toml: distribution.mode: unknown value {mode!r}")
        return mode

    def parse(text, source):
        raise AssertionError("the file itself is fine")

    assert load_overridden("[scenario]\n", "s.toml", {"distribution.mode": "p2p"}, build, parse) == "p2p"
    with pytest.raises(ScenarioError, match=r"^--set distribution.mode=ftp: unknown value 'ftp'$"):
        load_overridden("[scenario]\n", "s.toml", {"distribution.mode": "ftp"}, build,
                        lambda text, source: None)


def test_a_missing_array_of_tables_is_created_when_the_loader_wants_one():
    """`node.count=3` on a file without [[node]]: a table is tried first, then,
    as the loader says it wants an array there, an array of one table."""
    def build(doc):
        nodes = doc.get("node", [])
        if not isinstance(nodes, list):
            raise ScenarioError("s.toml: node: must be an array, not a table")
        return [entry.get("count", 1) for entry in nodes]

    def parse(text, source):
        return None

    assert load_overridden("[scenario]\n", "s.toml", {"node.count": 3}, build, parse) == [3]
    assert load_overridden("[scenario]\n", "s.toml", {"node[0].count": 4}, build, parse) == [4]
    assert load_overridden("[[node]]\n[[node]]\n", "s.toml", {"node.count": 2}, build, parse) == [2, 2]
