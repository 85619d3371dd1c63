"""Pushing blobs to docksim's registry over real HTTP: uploads (monolithic, chunked,
streamed with chunked transfer coding, cross-repo mounts), the spec's error
codes, concurrent pushes of one blob and abandoned sessions.  The helpers here
are shared with test_registry_manifests and test_registry_auth_cli."""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import threading
from pathlib import Path

import pytest

from registry.layout import RegistryLayout
from registry.server import RegistryServer

REPO_ROOT = Path(__file__).resolve().parent.parent
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Client:
    def __init__(self, url: str, token: str = ""):
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=20)
        self.token = token

    def __call__(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is None and method in ("POST", "PUT", "PATCH"):
            headers.setdefault("Content-Length", "0")
        self.conn.request(method, path, body=body, headers=headers,
                          encode_chunked=headers.get("Transfer-Encoding") == "chunked")
        resp = self.conn.getresponse()
        return resp.status, resp.headers, resp.read()

    def close(self) -> None:
        self.conn.close()


def codes(body: bytes) -> list[str]:
    return [e["code"] for e in json.loads(body)["errors"]]


@pytest.fixture
def server(tmp_path):
    with RegistryServer(tmp_path / "registry") as running:
        yield running


@pytest.fixture
def client(server):
    c = Client(server.url)
    yield c
    c.close()


def push_blob(client: Client, name: str, data: bytes) -> str:
    status, headers, _ = client("POST", f"/v2/{name}/blobs/uploads/")
    assert status == 202
    status, headers, _ = client("PUT", f"{headers['Location']}?digest={sha(data)}", data)
    assert status == 201, headers
    return sha(data)


def image(client: Client, name: str, layers: list[bytes]) -> bytes:
    """Push a config and layers; return a manifest naming them."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    descriptors = [{"mediaType": LAYER, "digest": push_blob(client, name, b), "size": len(b)} for b in layers]
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": OCI_CONFIG, "digest": push_blob(client, name, config),
                                  "size": len(config)},
                       "layers": descriptors}).encode()


def uploads_left(server: RegistryServer) -> list[str]:
    return [p.name for p in (server.root / "uploads").rglob("*") if p.is_file()]


# -- blob uploads ------------------------------------------------------------------------

def test_monolithic_upload(server, client):
    data = os.urandom(100_000)
    status, headers, body = client("POST", "/v2/lecture/app/blobs/uploads/")
    assert (status, body) == (202, b"")
    session = headers["Docker-Upload-UUID"]
    assert headers["Location"] == f"/v2/lecture/app/blobs/uploads/{session}"
    assert headers["Range"] == "0-0"
    status, headers, _ = client("PUT", f"{headers['Location']}?digest={sha(data)}", data,
                                {"Content-Type": "application/octet-stream"})
    assert status == 201
    assert headers["Location"] == f"/v2/lecture/app/blobs/{sha(data)}"
    assert headers["Docker-Content-Digest"] == sha(data)
    status, headers, _ = client("HEAD", f"/v2/lecture/app/blobs/{sha(data)}")
    assert status == 200 and int(headers["Content-Length"]) == len(data)
    assert client("GET", f"/v2/lecture/app/blobs/{sha(data)}")[2] == data
    assert uploads_left(server) == []


def test_monolithic_upload_in_one_post(client):
    data = os.urandom(5000)
    status, headers, _ = client("POST", f"/v2/lecture/app/blobs/uploads/?digest={sha(data)}", data)
    assert status == 201 and headers["Docker-Content-Digest"] == sha(data)
    assert client("GET", f"/v2/lecture/app/blobs/{sha(data)}")[2] == data


def test_chunked_upload_in_order(server, client):
    data = os.urandom(2500)
    _, headers, _ = client("POST", "/v2/lecture/app/blobs/uploads/")
    location = headers["Location"]
    for first, last in ((0, 999), (1000, 1999)):
        status, headers, _ = client("PATCH", location, data[first:last + 1],
                                    {"Content-Range": f"{first}-{last}"})
        assert status == 202 and headers["Range"] == f"0-{last}"
        location = headers["Location"]
    status, headers, _ = client("GET", location)
    assert status == 204 and headers["Range"] == "0-1999"
    status, headers, _ = client("PUT", f"{location}?digest={sha(data)}", data[2000:],
                                {"Content-Range": "2000-2499"})
    assert status == 201
    assert client("GET", f"/v2/lecture/app/blobs/{sha(data)}")[2] == data
    assert uploads_left(server) == []


def test_a_streamed_patch_with_chunked_transfer_coding(client):
    """dockerd sends each layer as one PATCH with Transfer-Encoding: chunked."""
    data = os.urandom(300_000)
    _, headers, _ = client("POST", "/v2/lecture/app/blobs/uploads/")
    pieces = (data[i:i + 70_000] for i in range(0, len(data), 70_000))
    status, headers, _ = client("PATCH", headers["Location"], pieces, {"Transfer-Encoding": "chunked"})
    assert status == 202 and headers["Range"] == f"0-{len(data) - 1}"
    status, _, _ = client("PUT", f"{headers['Location']}?digest={sha(data)}")
    assert status == 201
    assert client("GET", f"/v2/lecture/app/blobs/{sha(data)}")[2] == data


def test_out_of_order_chunk_is_416(client):
    _, headers, _ = client("POST", "/v2/lecture/app/blobs/uploads/")
    location = headers["Location"]
    client("PATCH", location, b"a" * 10, {"Content-Range": "0-9"})
    status, headers, body = client("PATCH", location, b"b" * 10, {"Content-Range": "20-29"})
    assert status == 416 and codes(body) == ["BLOB_UPLOAD_INVALID"]
    assert headers["Range"] == "0-9"
    status, headers, body = client("PATCH", location, b"b" * 10, {"Content-Range": "10-19"})
    assert status == 202 and headers["Range"] == "0-19"


@pytest.mark.parametrize("query", ["?digest=sha256:" + "0" * 64, "?digest=md5:" + "0" * 32, "", "?digest=sha256:xyz"])
def test_a_wrong_or_missing_digest_commits_nothing(server, client, query):
    data = b"some bytes"
    _, headers, _ = client("POST", "/v2/lecture/app/blobs/uploads/")
    status, _, body = client("PUT", headers["Location"] + query, data)
    assert status == 400 and codes(body) == ["DIGEST_INVALID"]
    assert client("HEAD", f"/v2/lecture/app/blobs/{sha(data)}")[0] == 404
    assert list((server.root / "blobs" / "sha256").glob("*")) == []
    status, _, body = client("GET", headers["Location"])  # the session is gone
    assert status == 404 and codes(body) == ["BLOB_UPLOAD_UNKNOWN"]
    assert uploads_left(server) == []


def test_unknown_or_foreign_sessions(client):
    status, _, body = client("PATCH", "/v2/lecture/app/blobs/uploads/" + "a" * 32, b"x")
    assert status == 404 and codes(body) == ["BLOB_UPLOAD_UNKNOWN"]
    status, _, body = client("GET", "/v2/lecture/app/blobs/uploads/../../etc")
    assert status in (400, 404)
    _, headers, _ = client("POST", "/v2/lecture/app/blobs/uploads/")
    other = headers["Location"].replace("lecture/app", "lecture/other")
    status, _, body = client("PUT", f"{other}?digest={sha(b'')}")
    assert status == 404 and codes(body) == ["BLOB_UPLOAD_UNKNOWN"]


def test_cancelled_upload_leaves_nothing(server, client):
    _, headers, _ = client("POST", "/v2/lecture/app/blobs/uploads/")
    client("PATCH", headers["Location"], b"x" * 1000, {"Content-Range": "0-999"})
    assert len(uploads_left(server)) == 1
    assert client("DELETE", headers["Location"])[0] == 204
    assert uploads_left(server) == []
    status, _, body = client("PUT", f"{headers['Location']}?digest={sha(b'x' * 1000)}")
    assert status == 404 and codes(body) == ["BLOB_UPLOAD_UNKNOWN"]


def test_abandoned_sessions_and_cut_bodies_commit_nothing(server, client):
    """A session never finished, and a PATCH whose client hangs up half way: no
    blob appears, the session keeps its last good offset, and stopping the
    server drops the bytes."""
    data = os.urandom(2000)
    _, headers, _ = client("POST", "/v2/lecture/app/blobs/uploads/")
    location = headers["Location"]
    client("PATCH", location, data[:1000], {"Content-Range": "0-999"})
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Range: 1000-1999\r\n"
                    f"Content-Length: 1000\r\n\r\n".encode() + data[1000:1500])
        raw.shutdown(socket.SHUT_WR)
        raw.recv(4096)
    status, headers, _ = client("GET", location)
    assert status == 204 and headers["Range"] == "0-999"
    assert client("HEAD", f"/v2/lecture/app/blobs/{sha(data)}")[0] == 404
    assert list((server.root / "blobs" / "sha256").glob("*")) == []
    server.stop()
    assert uploads_left(server) == []


def test_concurrent_pushes_of_one_blob(server):
    data = os.urandom(3_000_000)
    results = []

    def push(i: int) -> None:
        c = Client(server.url)
        try:
            _, headers, _ = c("POST", f"/v2/team{i % 2}/app/blobs/uploads/")
            location = headers["Location"]
            if i % 2:  # half of them in chunks
                for first in range(0, len(data), 1_000_000):
                    _, headers, _ = c("PATCH", location, data[first:first + 1_000_000],
                                      {"Content-Range": f"{first}-{first + 999_999}"})
                    location = headers["Location"]
                results.append(c("PUT", f"{location}?digest={sha(data)}")[0])
            else:
                results.append(c("PUT", f"{location}?digest={sha(data)}", data)[0])
        finally:
            c.close()

    threads = [threading.Thread(target=push, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [201] * 8
    blob = RegistryLayout(server.root).blob_path(sha(data))
    assert blob.read_bytes() == data
    assert [p.name for p in blob.parent.iterdir()] == [blob.name]
    assert uploads_left(server) == []


def test_cross_repository_mount(client):
    digest = push_blob(client, "lecture/base", b"shared layer")
    status, headers, _ = client("POST", f"/v2/lecture/app/blobs/uploads/?mount={digest}&from=lecture/base")
    assert status == 201 and headers["Location"] == f"/v2/lecture/app/blobs/{digest}"
    missing = sha(b"not here")
    status, headers, _ = client("POST", f"/v2/lecture/app/blobs/uploads/?mount={missing}&from=lecture/base")
    assert status == 202 and "Docker-Upload-UUID" in headers  # falls back to an upload


def test_invalid_names_are_refused(client):
    for path in ("/v2/Lecture/App/blobs/uploads/", "/v2/a//b/blobs/uploads/", "/v2/-x/blobs/uploads/"):
        status, _, body = client("POST", path)
        assert status == 400 and codes(body) == ["NAME_INVALID"], path


def test_delete_is_not_supported(client):
    digest = push_blob(client, "lecture/app", b"x")
    for path in (f"/v2/lecture/app/blobs/{digest}", "/v2/lecture/app/manifests/1"):
        status, _, body = client("DELETE", path)
        assert status == 405 and codes(body) == ["UNSUPPORTED"]
