"""`docker push` from docksim's daemon to the CNCF registry (distribution 2.8),
through the Docker SDK: the progress stream, skopeo's view of what arrived, and
the round trip (rmi, then our daemon pulls the pushed image back and runs it).
"""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from docker.errors import APIError, NotFound

from tests.conftest import ALPHA, GAMMA, running_daemon
from tests.peers import cncf_registry


@pytest.fixture(scope="module")
def cncf():
    with cncf_registry() as address:
        yield address


@pytest.fixture(scope="module")
def client(registry, tmp_path_factory):
    with running_daemon(registry.url, tmp_path_factory.mktemp("push-daemon")) as daemon:
        client = daemon.client()
        try:
            yield client
        finally:
            client.close()


def push(client, repository: str, tag: str) -> list[dict]:
    return list(client.api.push(repository, tag=tag, stream=True, decode=True))


def skopeo_inspect(ref: str, raw: bool = False) -> dict:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    argv = ["skopeo", "inspect", "--tls-verify=false", *(["--raw"] if raw else []), f"docker://{ref}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_push_progress_skopeo_and_pull_back(client, cncf, built):
    """Preparing/Pushed per layer (diff_id short ids, top first), the digest line
    and the aux message; skopeo sees a schema-2 manifest with our layers; after
    rmi our daemon pulls it back with the same image id and runs it."""
    client.images.pull("docksim-test/gamma", tag="1")
    repository = f"{cncf}/docksim/gamma"
    assert client.images.get(GAMMA).tag(repository, "v1")
    messages = push(client, repository, "v1")
    assert not [m for m in messages if "error" in m], messages
    assert messages[0] == {"status": f"The push refers to repository [{repository}]"}
    gamma = built.report.images[GAMMA]
    layer_ids = [client.images.get(GAMMA).attrs["RootFS"]["Layers"][i][7:19] for i in range(3)]
    preparing = [m["id"] for m in messages if m.get("status") == "Preparing"]
    assert preparing == layer_ids[::-1]
    assert sorted(m["id"] for m in messages if m.get("status") == "Pushed") == sorted(layer_ids)
    pushing = [m["progressDetail"] for m in messages if m.get("status") == "Pushing"]
    assert pushing and all(p["current"] <= p["total"] for p in pushing)
    aux = messages[-1]["aux"]
    assert messages[-2] == {"status": f"v1: digest: {aux['Digest']} size: {aux['Size']}"}

    seen = skopeo_inspect(f"{repository}:v1")
    assert seen["Digest"] == aux["Digest"]
    assert seen["Layers"] == [built.report.layers[n].digest for n in gamma.layers]
    manifest = skopeo_inspect(f"{repository}:v1", raw=True)
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["digest"] == gamma.config_digest

    again = push(client, repository, "v1")
    assert [m["status"] for m in again if m.get("id") in layer_ids and m["status"] != "Preparing"] \
        == ["Layer already exists"] * 3

    client.images.remove(f"{repository}:v1")
    client.images.remove(GAMMA)
    with pytest.raises(NotFound):
        client.images.get(f"{repository}:v1")
    pulled = client.images.pull(repository, tag="v1")
    assert pulled.id == gamma.config_digest
    assert client.containers.run(f"{repository}:v1", ["echo", "back"], remove=True) == b"back\n"
    client.images.remove(f"{repository}:v1")


def test_push_shares_layers_across_repositories_and_tags_all(client, cncf):
    """A second repository on the same registry uploads every blob again (no
    cross-repository mount); a push without a tag pushes every tag of the name."""
    client.images.pull("docksim-test/alpha", tag="1")
    image = client.images.get(ALPHA)
    repository = f"{cncf}/docksim/alpha"
    assert image.tag(repository, "a") and image.tag(repository, "b")
    messages = list(client.api.push(repository, stream=True, decode=True))
    tags = [m["aux"]["Tag"] for m in messages if "aux" in m]
    assert tags == ["a", "b"]
    for tag in ("a", "b"):
        assert skopeo_inspect(f"{repository}:{tag}")["Name"] == repository
        client.images.remove(f"{repository}:{tag}")


def test_push_failures_are_http_errors_before_the_stream(client, cncf):
    """An image that does not exist locally: 404 with dockerd's text; an unreachable
    registry: the stream ends with an error message."""
    with pytest.raises(APIError) as raised:
        push(client, f"{cncf}/docksim/nosuch", "1")
    assert raised.value.status_code == 404
    assert "An image does not exist locally with the tag" in str(raised.value)
    client.images.pull("docksim-test/alpha", tag="1")
    client.images.get(ALPHA).tag("127.0.0.1:9/docksim/alpha", "1")  # port 9: nothing listens
    try:
        messages = push(client, "127.0.0.1:9/docksim/alpha", "1")
        assert "connection refused" in messages[-1]["error"].lower()
    finally:
        client.images.remove("127.0.0.1:9/docksim/alpha:1")
