"""Measuring the real Docker daemon: phases seen from the client's side.

dockerd keeps no phase timings that a client could ask for, so they are read
from what it does say:
- the pull's JSON progress stream, stamped on arrival: per layer, the first
  `Downloading` to `Download complete` is `download`; `extract` ends at
  `Pull complete` and starts once the layer could be unpacked: its blob is in
  and the layer below it is registered (its first `Extracting` comes later);
  from sending the pull to the first layer status (after the manifest and
  config were fetched) is `resolve`;
- the Engine API calls, timed around each call: `create` is the successful
  POST /containers/create, `start` the POST start (dockerd answers once runc
  has started the process), `run` from that answer until `wait` answers, and
  `remove` the DELETE.
The calls are the Docker SDK's own sequence for `images.pull`,
`containers.run(..., remove=True)` and `images.remove`, made one by one with
the SDK's low-level client so each can be timed.
"""
from __future__ import annotations

import time

import docker

from vocab.scenario import Step

LAYER_STATES = ("Pulling fs layer", "Waiting", "Already exists")


class DockerRequestError(Exception):
    """The real daemon refused or failed a request; the text is its message."""


def _event(phase: str, start: float, end: float, layer: str = "", nbytes: int | None = None) -> dict:
    return {"phase": phase, "layer": layer, "start": start, "end": end, "bytes": nbytes}


def pull_events(messages, began: float, layer_sizes: dict[str, int]) -> list[dict]:
    """Phase events from a decoded progress stream, each message stamped as it arrives.

    `layer_sizes` maps a short layer id (12 hex digits of the blob digest) to the
    layer's content bytes, which is what `extract` reports in a trace.
    """
    first_layer = None
    seen: dict[str, dict[str, float]] = {}
    wire_bytes: dict[str, int] = {}
    for message in messages:
        now = time.monotonic()
        if "error" in message:
            raise DockerRequestError(message.get("error"))
        layer, status = message.get("id", ""), message.get("status", "")
        if status in LAYER_STATES and first_layer is None:
            first_layer = now
        if layer and status:
            marks = seen.setdefault(layer, {})
            marks.setdefault(status, now)
            if status == "Downloading":
                wire_bytes[layer] = int(message.get("progressDetail", {}).get("total") or 0)
    done = time.monotonic()
    events = [_event("resolve", began, first_layer or done)]
    below_registered = 0.0  # when the layer below (in the stream's order) was registered
    for layer, marks in seen.items():
        if "Download complete" in marks:
            start = marks.get("Downloading", marks["Download complete"])
            events.append(_event("download", start, marks["Download complete"], layer,
                                 wire_bytes.get(layer)))
        if "Pull complete" in marks:
            start = marks.get("Extracting", marks["Pull complete"])
            if "Download complete" in marks:
                # dockerd unpacks bottom to top, each layer once its blob is in
                # and the layer below is registered; the first "Extracting" is
                # only the first progress tick, which for blobs of 13 MB and
                # more came about 40 ms after that here
                ready = max(marks["Download complete"], below_registered)
                start = min(start, ready)
            events.append(_event("extract", start, marks["Pull complete"], layer, layer_sizes.get(layer)))
            below_registered = marks["Pull complete"]
    events.append(_event("pull", began, done))
    return events


def _pull(api: docker.APIClient, ref: str, layer_sizes: dict[str, int]) -> list[dict]:
    repository, tag = ref.rsplit(":", 1)
    began = time.monotonic()
    events = pull_events(api.pull(repository, tag=tag, stream=True, decode=True), began, layer_sizes)
    api.inspect_image(ref)
    return events


def _timed(call, *args, **kwargs):
    began = time.monotonic()
    result = call(*args, **kwargs)
    return result, began, time.monotonic()


def _run(api: docker.APIClient, ref: str, command: list[str], layer_sizes: dict[str, int]) -> list[dict]:
    events: list[dict] = []
    try:
        created, began, ended = _timed(api.create_container, ref, command)
    except docker.errors.ImageNotFound:  # the SDK's run: a 404 on create means pull first
        events += _pull(api, ref, layer_sizes)
        created, began, ended = _timed(api.create_container, ref, command)
    events.append(_event("create", began, ended))
    container = created["Id"]
    api.inspect_container(container)
    _, began, started = _timed(api.start, container)
    events.append(_event("start", began, started))
    logs = api.logs(container, stdout=True, stderr=False, stream=True, follow=True)
    status = api.wait(container)["StatusCode"]
    events.append(_event("run", started, time.monotonic()))
    _, began, ended = _timed(api.remove_container, container)
    events.append(_event("remove", began, ended))
    b"".join(logs)
    if status != 0:
        raise DockerRequestError(f"the container exited with status {status}")
    return events


def play(client: docker.DockerClient, step: Step, command: list[str],
         layer_sizes: dict[str, int]) -> list[dict]:
    """Send one scenario request to a real dockerd; return its phase events."""
    api = client.api
    try:
        if step.command == "pull":
            return _pull(api, step.image, layer_sizes)
        if step.command == "run":
            return _run(api, step.image, command, layer_sizes)
        if step.command == "rmi":
            api.remove_image(step.image)
            return []
    except docker.errors.APIError as exc:
        raise DockerRequestError(exc.explanation or str(exc)) from None
    raise ValueError(step.command)
