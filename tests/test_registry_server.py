"""The registry server over real HTTP on 127.0.0.1: API, errors, link emulation, CLI, skopeo."""
from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from registry.builder import build_images
from registry.layout import RegistryLayout
from registry.server import RegistryServer
from vocab.scenario import parse_scenario

REPO_ROOT = Path(__file__).resolve().parent.parent
HELLO = REPO_ROOT / "scenarios" / "hello.toml"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Client:
    """One keep-alive HTTP/1.1 connection to a registry."""

    def __init__(self, url: str):
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=10)

    def request(self, method: str, path: str, headers: dict[str, str] | None = None):
        self.connection.request(method, path, headers=headers or {})
        response = self.connection.getresponse()
        return response.status, response.headers, response.read()

    def close(self) -> None:
        self.connection.close()


def get(url: str, path: str, headers: dict[str, str] | None = None):
    client = Client(url)
    try:
        return client.request("GET", path, headers)
    finally:
        client.close()


def error_code(body: bytes) -> str:
    errors = json.loads(body)["errors"]
    assert len(errors) == 1 and set(errors[0]) == {"code", "message", "detail"}
    return errors[0]["code"]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A root with lecture/hello:1 (from hello.toml), lecture/other:2 and raw test blobs."""
    root = tmp_path_factory.mktemp("registry")
    text = HELLO.read_text() + '\n[[image]]\nref = "lecture/other:2"\nlayers = [{ name = "o", size_mb = 2.5 }]\n'
    report = build_images(parse_scenario(text), root)
    layout = RegistryLayout(root)
    rng = random.Random(7)
    blobs = {name: layout.put_blob(rng.randbytes(size))
             for name, size in (("2mb", 2_000_000), ("1mb-a", 1_000_000), ("1mb-b", 1_000_000))}
    return root, report, blobs


@pytest.fixture(scope="module")
def server(registry):
    with RegistryServer(registry[0]) as running:
        yield running


def test_base_endpoint(server):
    status, headers, body = get(server.url, "/v2/")
    assert (status, json.loads(body)) == (200, {})
    assert headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_manifest_by_tag_and_by_digest(server, registry):
    _, report, _ = registry
    image = report.images["lecture/hello:1"]
    for reference in ("1", image.manifest_digest):
        status, headers, body = get(server.url, f"/v2/lecture/hello/manifests/{reference}")
        assert status == 200
        assert headers["Content-Type"] == OCI_MANIFEST
        assert headers["Docker-Content-Digest"] == image.manifest_digest
        assert int(headers["Content-Length"]) == len(body) == image.manifest_bytes
        assert "sha256:" + hashlib.sha256(body).hexdigest() == image.manifest_digest


def test_head_sends_headers_and_no_body(server, registry):
    image = registry[1].images["lecture/hello:1"]
    client = Client(server.url)
    try:
        status, headers, body = client.request("HEAD", "/v2/lecture/hello/manifests/1")
        assert (status, body) == (200, b"")
        assert int(headers["Content-Length"]) == image.manifest_bytes
        assert headers["Docker-Content-Digest"] == image.manifest_digest
        # Had HEAD sent a body, it would now be read as the next status line.
        assert client.request("GET", "/v2/")[0] == 200
        layer = registry[1].layers["app"]
        status, headers, body = client.request("HEAD", f"/v2/lecture/hello/blobs/{layer.digest}")
        assert (status, body, int(headers["Content-Length"])) == (200, b"", layer.compressed_bytes)
        assert client.request("GET", "/v2/")[0] == 200
    finally:
        client.close()


def test_blobs_hash_to_their_digest(server, registry):
    _, report, _ = registry
    digests = [layer.digest for layer in report.layers.values()]
    digests += [image.config_digest for image in report.images.values()]
    for digest in digests:
        status, headers, body = get(server.url, f"/v2/lecture/hello/blobs/{digest}")
        assert status == 200 and headers["Docker-Content-Digest"] == digest
        assert "sha256:" + hashlib.sha256(body).hexdigest() == digest


def test_range_requests_give_exactly_the_bytes_asked(server, registry):
    root, _, blobs = registry
    digest = blobs["2mb"]
    whole = (root / "blobs" / "sha256" / digest[7:]).read_bytes()
    path = f"/v2/lecture/hello/blobs/{digest}"
    for header, first, last in (("bytes=10-99", 10, 99), ("bytes=1999000-", 1999000, 1999999),
                                ("bytes=-100", 1999900, 1999999), ("bytes=1999990-5000000", 1999990, 1999999)):
        status, headers, body = get(server.url, path, {"Range": header})
        assert status == 206
        assert headers["Content-Range"] == f"bytes {first}-{last}/2000000"
        assert body == whole[first:last + 1]
    status, headers, body = get(server.url, path, {"Range": "bytes=2000000-"})
    assert status == 416 and headers["Content-Range"] == "bytes */2000000"
    status, _, body = get(server.url, path, {"Range": "bytes=0-1,5-9"})  # multipart: ignored
    assert status == 200 and body == whole


@pytest.mark.parametrize("path, status, code", [
    ("/v2/lecture/nope/manifests/1", 404, "NAME_UNKNOWN"),
    ("/v2/lecture/hello/manifests/2", 404, "MANIFEST_UNKNOWN"),
    ("/v2/lecture/hello/manifests/sha256:" + "0" * 64, 404, "MANIFEST_UNKNOWN"),
    ("/v2/lecture/hello/blobs/sha256:" + "0" * 64, 404, "BLOB_UNKNOWN"),
    ("/v2/lecture/nope/blobs/sha256:" + "0" * 64, 404, "NAME_UNKNOWN"),
    ("/v2/lecture/hello/blobs/sha256:xyz", 400, "DIGEST_INVALID"),
    ("/v2/lecture/hello/blobs/md5:" + "0" * 32, 400, "DIGEST_INVALID"),
    ("/v2/lecture/hello/manifests/sha256:ABC", 400, "DIGEST_INVALID"),
    ("/v2/Lecture/Hello/manifests/1", 400, "NAME_INVALID"),
    ("/v2/nope/tags/list", 404, "NAME_UNKNOWN"),
    # Attempts to leave the root.
    ("/v2/../../etc/manifests/1", 400, "NAME_INVALID"),
    ("/v2/lecture/../hello/manifests/1", 400, "NAME_INVALID"),
    ("/v2/%2e%2e/%2e%2e/manifests/1", 400, "NAME_INVALID"),
    ("/v2/lecture/hello/manifests/..", 404, "MANIFEST_UNKNOWN"),
    ("/v2/lecture/hello/manifests/..%2f..%2fpasswd", 404, "MANIFEST_UNKNOWN"),
    ("/v2/lecture/hello/blobs/sha256:..%2f..%2f" + "0" * 58, 400, "DIGEST_INVALID"),
])
def test_errors_are_oci_json_with_spec_status(server, path, status, code):
    got_status, headers, body = get(server.url, path)
    assert (got_status, error_code(body)) == (status, code)
    assert headers["Content-Type"] == "application/json"


def test_a_config_is_not_served_as_a_manifest(server, registry):
    config = registry[1].images["lecture/hello:1"].config_digest
    status, _, body = get(server.url, f"/v2/lecture/hello/manifests/{config}")
    assert (status, error_code(body)) == (404, "MANIFEST_UNKNOWN")


def test_push_methods_are_refused_for_now(server):
    status, _, body = Client(server.url).request("DELETE", "/v2/lecture/hello/manifests/1")
    assert (status, error_code(body)) == (405, "UNSUPPORTED")


def test_catalog_and_tags_list_with_pagination(server):
    status, headers, body = get(server.url, "/v2/_catalog")
    assert json.loads(body) == {"repositories": ["lecture/hello", "lecture/other"]}
    status, headers, body = get(server.url, "/v2/_catalog?n=1")
    assert json.loads(body) == {"repositories": ["lecture/hello"]}
    assert headers["Link"] == '</v2/_catalog?n=1&last=lecture/hello>; rel="next"'
    status, headers, body = get(server.url, "/v2/_catalog?n=1&last=lecture/hello")
    assert json.loads(body) == {"repositories": ["lecture/other"]} and "Link" not in headers
    status, _, body = get(server.url, "/v2/lecture/other/tags/list")
    assert json.loads(body) == {"name": "lecture/other", "tags": ["2"]}


def test_one_log_line_per_request(server, registry, caplog):
    digest = registry[1].layers["base"].digest
    with caplog.at_level(logging.INFO, logger="registry.server"):
        get(server.url, f"/v2/lecture/hello/blobs/{digest}")
    # the previous test's last line may land late: the line follows the bytes sent
    lines = [r.getMessage() for r in caplog.records
             if r.name == "registry.server" and digest[:19] in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith(f"GET /v2/lecture/hello/blobs/{digest[:19]}… 200 "
                               f"{registry[1].layers['base'].compressed_bytes} B ")


def timed_get(url: str, path: str, results: dict, key: str, started_s: float) -> None:
    status, _, body = get(url, path)
    results[key] = (status, len(body), time.perf_counter() - started_s)


def test_one_download_gets_the_whole_link(registry):
    with RegistryServer(registry[0], bandwidth_mbps=16) as server:
        results = {}
        timed_get(server.url, f"/v2/lecture/hello/blobs/{registry[2]['2mb']}", results, "2mb",
                  time.perf_counter())
    status, size, elapsed_s = results["2mb"]
    assert (status, size) == (200, 2_000_000)
    assert elapsed_s == pytest.approx(1.0, rel=0.05)  # 16 Mbit/s = 2 MB/s


def test_concurrent_downloads_share_the_link_fairly(registry):
    with RegistryServer(registry[0], bandwidth_mbps=16) as server:
        results: dict = {}
        started_s = time.perf_counter()
        threads = [threading.Thread(target=timed_get, args=(
            server.url, f"/v2/lecture/hello/blobs/{registry[2][key]}", results, key, started_s))
            for key in ("1mb-a", "1mb-b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for key in ("1mb-a", "1mb-b"):
        status, size, elapsed_s = results[key]
        assert (status, size) == (200, 1_000_000)
        assert elapsed_s == pytest.approx(1.0, rel=0.05)  # each at 1 MB/s, not 0.5 s then 1.0 s


def test_every_request_waits_one_round_trip(registry):
    with RegistryServer(registry[0], rtt_ms=50) as server:
        client = Client(server.url)
        for method, path in (("GET", "/v2/"), ("HEAD", "/v2/lecture/hello/manifests/1"),
                             ("GET", "/v2/lecture/hello/manifests/1"), ("GET", "/v2/nope/tags/list")):
            started_s = time.perf_counter()
            client.request(method, path)
            assert 0.050 <= time.perf_counter() - started_s < 0.070
        client.close()


def test_request_time_is_rtt_plus_bytes_over_rate(registry):
    with RegistryServer(registry[0], bandwidth_mbps=16, rtt_ms=100) as server:
        started_s = time.perf_counter()
        status, _, body = get(server.url, f"/v2/lecture/hello/blobs/{registry[2]['1mb-a']}")
        elapsed_s = time.perf_counter() - started_s
    assert status == 200 and elapsed_s == pytest.approx(0.1 + 0.5, rel=0.05)


def test_stop_abandons_a_paced_download_promptly(registry):
    server = RegistryServer(registry[0], bandwidth_mbps=1).start()  # 2 MB would take 16 s
    outcome = {}

    def download():
        try:
            outcome["result"] = get(server.url, f"/v2/lecture/hello/blobs/{registry[2]['2mb']}")
        except (http.client.HTTPException, OSError) as error:
            outcome["error"] = error

    thread = threading.Thread(target=download)
    thread.start()
    time.sleep(0.3)
    started_s = time.perf_counter()
    server.stop()
    thread.join(5)
    assert time.perf_counter() - started_s < 1.0
    assert "error" in outcome  # the body was cut short


def test_unlimited_blobs_go_fast(tmp_path, registry):
    root = tmp_path / "fast"
    shutil.copytree(registry[0] / "repositories", root / "repositories")
    digest = RegistryLayout(root).put_blob(os.urandom(100_000_000))
    with RegistryServer(root) as server:
        client = Client(server.url)
        client.connection.request("GET", f"/v2/lecture/hello/blobs/{digest}")
        started_s = time.perf_counter()
        response = client.connection.getresponse()
        buffer, received = bytearray(1 << 20), 0
        while chunk := response.readinto(buffer):
            received += chunk
        elapsed_s = time.perf_counter() - started_s
        client.close()
    assert received == 100_000_000
    assert received / elapsed_s > 500e6


def test_non_loopback_addresses_are_refused(tmp_path):
    with pytest.raises(ValueError):
        RegistryServer(tmp_path, host="0.0.0.0")


# -- the command line --

def serve_command(root: Path, listen: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "registry", "serve", "--root", str(root), "--listen", listen, *extra]


def test_cli_serves_until_sigterm(registry, tmp_path):
    ready = tmp_path / "ready"
    process = subprocess.Popen(serve_command(registry[0], "127.0.0.1:0", "--ready-file", str(ready)),
                               cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline_s = time.monotonic() + 10
        while not ready.exists() and time.monotonic() < deadline_s and process.poll() is None:
            time.sleep(0.02)
        address = ready.read_text()
        assert address.endswith("\n") and address.startswith("127.0.0.1:")
        status, headers, body = get(f"http://{address.strip()}", "/v2/")
        assert (status, body) == (200, b"{}")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "GET /v2/ 200" in stderr
    assert not ready.exists()


def test_cli_exits_2_with_one_line_when_the_port_is_taken(registry):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(serve_command(registry[0], f"127.0.0.1:{port}"), cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=10)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in run.stderr


# -- a real client --

@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_inspects_and_copies_the_image(server, registry, tmp_path):
    image = registry[1].images["lecture/hello:1"]
    reference = f"docker://{server.url.removeprefix('http://')}/lecture/hello:1"
    inspect = subprocess.run(["skopeo", "inspect", "--tls-verify=false", reference],
                             capture_output=True, text=True, timeout=30)
    assert inspect.returncode == 0, inspect.stderr
    described = json.loads(inspect.stdout)
    assert described["Digest"] == image.manifest_digest
    assert described["Layers"] == [registry[1].layers[n].digest for n in ("base", "app")]
    policy = tmp_path / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    copy = subprocess.run(["skopeo", "--policy", str(policy), "copy", "--src-tls-verify=false",
                           reference, f"dir:{tmp_path / 'copy'}"], capture_output=True, text=True, timeout=60)
    assert copy.returncode == 0, copy.stderr
    for digest in described["Layers"] + [image.config_digest]:
        assert (tmp_path / "copy" / digest[7:]).is_file()
