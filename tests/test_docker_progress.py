"""Phases read off dockerd's pull progress stream (harness/docker_client.py),
from a hand-made stream with hand-set arrival times."""
from __future__ import annotations

import pytest

from harness import docker_client

# (arrival s, layer id, status): two layers to fetch above one that exists.
# Layer b's blob is in at 0.090, but a is registered only at 0.120, and b's
# first "Extracting" tick comes 40 ms after that.
STREAM = [
    (0.010, "a", "Pulling fs layer"), (0.011, "b", "Pulling fs layer"),
    (0.012, "c", "Already exists"),
    (0.020, "a", "Downloading"), (0.021, "b", "Downloading"), (0.030, "a", "Downloading"),
    (0.050, "a", "Download complete"), (0.055, "a", "Extracting"),
    (0.090, "b", "Download complete"), (0.120, "a", "Pull complete"),
    (0.160, "b", "Extracting"), (0.180, "b", "Extracting"), (0.200, "b", "Pull complete"),
]
DONE_S = 0.205


def _events(monkeypatch, stream):
    clock = {"now": 0.0}
    monkeypatch.setattr(docker_client.time, "monotonic", lambda: clock["now"])

    def messages():
        for at_s, layer, status in stream:
            clock["now"] = at_s
            yield {"id": layer, "status": status, "progressDetail": {"total": 1000}}
        clock["now"] = DONE_S

    events = docker_client.pull_events(messages(), 0.0, {"a": 4000, "b": 8000})
    return {(e["phase"], e["layer"]): (e["start"], e["end"]) for e in events}


def test_phases_of_a_pull_from_its_progress_stream(monkeypatch):
    got = _events(monkeypatch, STREAM)
    assert got == {
        ("resolve", ""): (0.0, 0.010),           # until the first layer status
        ("download", "a"): (0.020, 0.050),       # first Downloading .. Download complete
        ("download", "b"): (0.021, 0.090),
        # from when the layer could be unpacked (blob in, layer below registered)
        ("extract", "a"): (0.050, 0.120),
        ("extract", "b"): (0.120, 0.200),
        ("pull", ""): (0.0, DONE_S),
    }


def test_an_error_in_the_stream_is_raised(monkeypatch):
    monkeypatch.setattr(docker_client.time, "monotonic", lambda: 0.0)
    with pytest.raises(docker_client.DockerRequestError, match="manifest unknown"):
        docker_client.pull_events(iter([{"error": "manifest unknown"}]), 0.0, {})
