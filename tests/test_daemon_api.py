"""The daemon's Engine API through real clients: the Docker SDK for Python and the
docker CLI, against `python -m launcher` on a unix socket and docksim's registry.

One daemon serves this module; each test leaves it without containers, and
tests that need an image absent remove it first, so their order does not matter.
"""
from __future__ import annotations

import os
import subprocess
import threading

import docker
import pytest
from docker.errors import APIError, ContainerError, ImageNotFound, NotFound

from registry.builder import go_arch
from tests.conftest import (ALPHA, API_VERSION, BETA, GAMMA, docker_cli, overlay_mounts_under,
                            pull_stream, running_daemon, sdk_client, short_id,
                            statuses_by_layer)


@pytest.fixture(scope="module")
def daemon(registry, tmp_path_factory):
    with running_daemon(registry.url, tmp_path_factory.mktemp("api-daemon")) as process:
        yield process


pytestmark = pytest.mark.usefixtures("no_containers_left")


@pytest.fixture(scope="module")
def client(daemon):
    with sdk_client(daemon) as client:
        yield client


def absent(client: docker.DockerClient, ref: str) -> None:
    try:
        client.images.remove(ref)
    except ImageNotFound:
        pass


def url(client: docker.DockerClient, path: str) -> str:
    return f"{client.api.base_url}/v{API_VERSION}{path}"


# -- system ----------------------------------------------------------------------

def test_version_and_ping(client):
    """`docker version` / `_ping`: API 1.41, this host's OS and Go-style arch."""
    assert client.ping() is True
    version = client.version()
    assert version["ApiVersion"] == "1.41"
    assert version["Os"] == "linux"
    assert version["Arch"] == go_arch()
    assert version["Components"][0]["Details"]["ApiVersion"] == "1.41"


def test_head_ping_carries_api_version(client):
    """The docker CLI negotiates the API version from `HEAD /_ping`'s Api-Version header."""
    answer = client.api.head(f"{client.api.base_url}/_ping")
    assert answer.status_code == 200
    assert answer.headers["Api-Version"] == "1.41"
    assert answer.content == b""


def test_unknown_endpoint_is_404_with_a_json_message(client):
    """dockerd answers unknown paths with 404 and its error body `{"message": ...}`."""
    answer = client.api.get(url(client, "/no/such/endpoint"))
    assert answer.status_code == 404
    assert answer.headers["Content-Type"] == "application/json"
    assert "/no/such/endpoint" in answer.json()["message"]
    wrong_method = client.api.put(url(client, "/containers/json"))
    assert wrong_method.status_code == 404
    assert set(wrong_method.json()) == {"message"}


def test_malformed_json_to_create_is_400_and_the_daemon_keeps_serving(client, daemon):
    """A body that is not JSON is the client's fault (400 with a message), not a crash."""
    answer = client.api.post(url(client, "/containers/create"), data=b'{"Image": "x", ',
                             headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert "JSON" in answer.json()["message"]
    not_an_object = client.api.post(url(client, "/containers/create"), data=b"[1, 2]",
                                    headers={"Content-Type": "application/json"})
    assert not_an_object.status_code == 400
    assert daemon.proc.poll() is None
    assert client.ping() is True
    assert client.version()["ApiVersion"] == "1.41"


# -- images ----------------------------------------------------------------------

def test_pull_of_an_unknown_image_is_404(client):
    """dockerd answers a pull whose manifest the registry does not know with an HTTP
    404 (before any progress), which the SDK raises as NotFound; `containers.run`
    of such an image gets 404 from create, then from the pull, and raises it."""
    with pytest.raises(NotFound) as raised:
        client.images.pull("docksim-test/nosuch", tag="1")
    assert raised.value.status_code == 404
    assert "docksim-test/nosuch:1" in raised.value.explanation
    with pytest.raises(NotFound):
        client.containers.run("docksim-test/nosuch:1", ["true"], remove=True)
    assert "docksim-test/nosuch:1" not in [t for image in client.images.list() for t in image.tags]


def test_remove_image_untags_it_and_a_new_pull_downloads_again(client, built, registry_log):
    """`docker rmi`: the tag goes, the image (no other tag) and its unshared layers
    are deleted, so the next pull fetches the layer blobs from the registry again."""
    client.images.pull("docksim-test/alpha", tag="1")
    image_id = built.report.images[ALPHA].config_digest
    answer = client.api.remove_image(ALPHA)
    assert answer[0] == {"Untagged": ALPHA}
    assert {"Deleted": image_id} in answer
    with pytest.raises(ImageNotFound):
        client.images.get(ALPHA)
    assert ALPHA not in [tag for image in client.images.list() for tag in image.tags]

    registry_log.lines.clear()
    messages = pull_stream(client, ALPHA)
    big = built.report.layers["big"]
    assert statuses_by_layer(messages)[short_id(big.digest)][0] == "Pulling fs layer"
    assert registry_log.blob_gets()[short_id(big.digest)] == 1
    assert client.images.get(ALPHA).id == image_id


# -- containers ------------------------------------------------------------------

def test_run_returns_the_output(client):
    """`containers.run(image, cmd, remove=True)`: create, start, logs, wait, remove."""
    client.images.pull("docksim-test/alpha", tag="1")
    assert client.containers.run(ALPHA, ["echo", "hello"], remove=True) == b"hello\n"
    assert client.containers.run(ALPHA, ["sh", "-c", "echo $((6 * 7))"], remove=True) == b"42\n"


def test_run_with_a_nonzero_exit_raises_container_error(client):
    """A non-zero exit status is a ContainerError carrying the status and the stderr
    logs (docksim's log holds stdout and stderr together)."""
    client.images.pull("docksim-test/alpha", tag="1")
    with pytest.raises(ContainerError) as raised:
        client.containers.run(ALPHA, ["sh", "-c", "echo oops >&2; exit 3"], remove=True)
    assert raised.value.exit_status == 3
    assert raised.value.stderr == b"oops\n"


def test_run_of_an_image_not_pulled_pulls_it_first(client, built, registry_log):
    """The SDK's create answers 404 for a missing image; the SDK pulls it and creates
    again.  The shared base layer is not fetched again if already there."""
    absent(client, BETA)
    registry_log.lines.clear()
    assert client.containers.run(BETA, ["echo", "pulled"], remove=True) == b"pulled\n"
    image = client.images.get(BETA)
    assert image.id == built.report.images[BETA].config_digest
    assert registry_log.blob_gets()[short_id(built.report.layers["extra"].digest)] == 1


def test_detached_container_is_listed_then_stopped_and_removed(client, daemon):
    """`run(detach=True)` returns a running container; `stop(timeout=1)` sends SIGTERM,
    which `sleep` as PID 1 ignores, then SIGKILL: exit status 137 (143 if it obeyed).
    Its overlay rootfs is mounted from create until remove."""
    client.images.pull("docksim-test/alpha", tag="1")
    container = client.containers.run(ALPHA, ["sleep", "30"], detach=True)
    try:
        rootfs = daemon.root.resolve() / "containers" / container.id / "rootfs"
        assert overlay_mounts_under(daemon.root) == [str(rootfs)]
        listed = client.containers.list()
        assert [c.id for c in listed] == [container.id]
        assert listed[0].status == "running"
        assert listed[0].attrs["Config"]["Cmd"] == ["sleep", "30"]
        summary, = client.api.containers()  # GET /containers/json as it is
        assert (summary["Id"], summary["State"], summary["Command"]) == (container.id, "running", "sleep 30")
        container.reload()
        assert container.attrs["State"]["Running"] is True
        assert container.attrs["State"]["Pid"] > 0

        container.stop(timeout=1)
        assert container.wait()["StatusCode"] in (137, 143)
        container.reload()
        assert container.status == "exited"
        assert container.attrs["State"]["ExitCode"] in (137, 143)
        assert client.containers.list() == []
        assert [c.id for c in client.containers.list(all=True)] == [container.id]
    finally:
        container.remove(force=True)
    with pytest.raises(NotFound):
        client.containers.get(container.id)
    assert overlay_mounts_under(daemon.root) == []


def test_kill_sends_sigkill_to_a_running_container_only(client):
    """`docker kill`: SIGKILL by default (exit status 128 + 9); a container that is
    not running cannot be killed (409)."""
    client.images.pull("docksim-test/alpha", tag="1")
    container = client.containers.run(ALPHA, ["sleep", "30"], detach=True)
    try:
        container.kill()
        assert container.wait()["StatusCode"] == 137
        with pytest.raises(APIError) as raised:
            container.kill()
        assert raised.value.status_code == 409
    finally:
        container.remove(force=True)


def test_two_clients_run_at_once(daemon, client):
    """Each request on its own connection: two SDK clients' runs do not mix outputs."""
    client.images.pull("docksim-test/alpha", tag="1")
    outputs: dict[int, bytes] = {}

    def run(i: int) -> None:
        own = daemon.client()
        try:
            outputs[i] = own.containers.run(ALPHA, ["sh", "-c", f"sleep 0.2; echo client-{i}"],
                                            remove=True)
        finally:
            own.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert outputs == {0: b"client-0\n", 1: b"client-1\n"}


# -- the docker CLI --------------------------------------------------------------

def cli(daemon, tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    env["DOCKER_CONFIG"] = str(tmp_path / "docker-config")  # leave ~/.docker alone
    return subprocess.run([docker_cli(), "-H", daemon.base_url, *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_run_prints_the_output_and_exits_0(daemon, client, tmp_path):
    """`docker run --rm IMAGE echo hi`: the CLI attaches (hijacked connection), waits
    with condition=removed, starts; the daemon auto-removes the container."""
    done = cli(daemon, tmp_path, "run", "--rm", ALPHA, "echo", "hi")
    assert (done.returncode, done.stdout) == (0, "hi\n"), done.stderr
    listed = cli(daemon, tmp_path, "ps", "-a", "--format", "{{.ID}}")
    assert (listed.returncode, listed.stdout) == (0, ""), listed.stderr


def test_cli_run_exits_with_the_container_status(daemon, tmp_path):
    """`docker run` exits with the container's exit status."""
    done = cli(daemon, tmp_path, "run", "--rm", ALPHA, "sh", "-c", "exit 7")
    assert done.returncode == 7, done.stderr


def test_cli_pull_and_images(daemon, client, built, tmp_path):
    """`docker pull REF` (the CLI sends the name as docker.io/REF) prints the manifest
    digest; `docker images` lists the ref with the config digest as IMAGE ID."""
    absent(client, GAMMA)
    done = cli(daemon, tmp_path, "pull", GAMMA)
    assert done.returncode == 0, done.stderr
    assert f"Digest: {built.report.images[GAMMA].manifest_digest}" in done.stdout
    assert f"Status: Downloaded newer image for {GAMMA}" in done.stdout
    again = cli(daemon, tmp_path, "pull", GAMMA)
    assert f"Status: Image is up to date for {GAMMA}" in again.stdout, again.stderr
    images = cli(daemon, tmp_path, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    assert images.returncode == 0, images.stderr
    image_id = built.report.images[GAMMA].config_digest.split(":")[1][:12]
    assert f"{GAMMA} {image_id}" in images.stdout.splitlines()
