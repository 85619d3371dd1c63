"""The scenario file, version 1: defaults, normalisation and one-line errors."""
from __future__ import annotations

import pytest

from vocab.scenario import load_scenario, normalise_ref, parse_scenario
from vocab.schema import ScenarioError

MINIMAL = """
[scenario]
name = "tiny"

[[image]]
ref = "lecture/tiny"
layers = [{ name = "base", size_mb = 2.5 }]

[[step]]
command = "pull"
image = "lecture/tiny:latest"
"""


def test_defaults_of_a_minimal_file():
    s = parse_scenario(MINIMAL, "tiny.toml")
    assert (s.seed, s.replications, s.description) == (0, 1, "")
    assert s.network.bandwidth_mbps is None and s.network.rtt_ms == 0.0
    assert s.daemon.max_concurrent_downloads == 3
    step = s.steps[0]
    assert (step.at_s, step.clients, step.repeat, step.run_s) == (0.0, 1, 1, 0.0)
    layer = s.images[0].layers[0]
    assert layer.compression == 1.0
    assert layer.size_bytes == 2_500_000 and layer.compressed_bytes == 2_500_000


def test_hello_scenario_values():
    s = load_scenario("scenarios/hello.toml")
    assert s.name == "hello" and s.seed == 1 and s.replications == 3
    assert s.network.bandwidth_mbps == 100.0 and s.network.rtt_ms == 20.0
    base, app = s.images[0].layers
    assert base.compressed_bytes == 1_200_000  # 3 MB / 2.5
    assert app.compressed_bytes == 20_000_000
    assert s.steps[0].repeat == 2 and s.steps[0].command == "run"


def test_refs_are_normalised_with_a_tag():
    assert normalise_ref("lecture/tiny") == "lecture/tiny:latest"
    assert normalise_ref("127.0.0.1:5000/a/b:v1.2") == "127.0.0.1:5000/a/b:v1.2"
    assert normalise_ref("Upper/case") is None
    assert normalise_ref("a//b") is None
    s = parse_scenario(MINIMAL)
    assert s.images[0].ref == "lecture/tiny:latest" and s.steps[0].image == s.images[0].ref


def test_shared_layers_are_one_layer():
    text = MINIMAL + """
[[image]]
ref = "lecture/two:1"
layers = [{ name = "base", size_mb = 2.5 }, { name = "top", size_mb = 1 }]
"""
    s = parse_scenario(text)
    assert sorted(s.layers()) == ["base", "top"]


@pytest.mark.parametrize("change, expected", [
    (("name = \"tiny\"", "name = \"tiny\"\ncolour = 1"), "t.toml: scenario.colour: unknown key"),
    (("name = \"tiny\"", "name = \"Tiny Name\""), "t.toml: scenario.name: 'Tiny Name' must be lowercase"),
    (("[scenario]\nname = \"tiny\"", "[scenario]\nseed = 1"), "t.toml: scenario.name: missing required key"),
    (("size_mb = 2.5", "size_mb = -1"), "t.toml: image[0].layers[0].size_mb: must be greater than 0"),
    (("size_mb = 2.5", "size_mb = \"big\""), "t.toml: image[0].layers[0].size_mb: must be a number"),
    (("size_mb = 2.5", "size_mb = 2.5, compression = 0.5"),
     "t.toml: image[0].layers[0].compression: must be at least 1.0"),
    (("command = \"pull\"", "command = \"bulid\""), "t.toml: step[0].command: unknown value 'bulid'"),
    (("image = \"lecture/tiny:latest\"", "image = \"lecture/other:1\""),
     "t.toml: step[0].image: unknown image 'lecture/other:1'"),
    (("command = \"pull\"", "command = \"pull\"\nclients = 0"), "t.toml: step[0].clients: must be at least 1"),
    (("command = \"pull\"", "command = \"pull\"\nclients = true"), "t.toml: step[0].clients: must be an integer"),
    (("[[step]]", "[network]\nrtt_ms = -5\n[[step]]"), "t.toml: network.rtt_ms: must not be negative"),
    (("layers = [{ name = \"base\", size_mb = 2.5 }]", "layers = []"),
     "t.toml: image[0].layers: needs at least one entry"),
    (("[[step]]", "[[steps]]"), "t.toml: steps: unknown key"),
    (("name = \"tiny\"", "name = "), "t.toml: not valid TOML"),
])
def test_errors_name_the_file_and_key(change, expected):
    old, new = change
    assert old in MINIMAL
    with pytest.raises(ScenarioError) as err:
        parse_scenario(MINIMAL.replace(old, new, 1), "t.toml")
    message = str(err.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_one_name_one_layer():
    text = MINIMAL + """
[[image]]
ref = "lecture/two:1"
layers = [{ name = "base", size_mb = 9 }]
"""
    with pytest.raises(ScenarioError, match=r"image\[1\]\.layers\[0\]: layer 'base' is declared elsewhere"):
        parse_scenario(text, "t.toml")


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.toml")
