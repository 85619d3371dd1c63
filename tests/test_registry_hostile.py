"""Hostile input to docksim's registry, over real HTTP on loopback: bad repository
names, bad digests, oversize manifests and blobs, abandoned upload sessions and
many concurrent pushes of one blob.  Each gets the OCI error code the
distribution spec (and CNCF distribution) gives, and the registry root holds
afterwards exactly what it should: no stray blob, no upload file, no byte leaked.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from registry.manifests import MAX_MANIFEST_BYTES
from registry.server import RegistryServer
from tests.test_registry_push import (LAYER, OCI_MANIFEST, Client, codes, image, push_blob, sha,
                                      uploads_left)

MAX_BLOB_BYTES = 1_000_000
IDLE_S = 0.4


def files_under(root: Path) -> dict[str, int]:
    """Every file under the registry root with its size."""
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def server(tmp_path):
    with RegistryServer(tmp_path / "registry", max_blob_bytes=MAX_BLOB_BYTES,
                        upload_idle_s=IDLE_S) as running:
        yield running


@pytest.fixture
def client(server):
    c = Client(server.url)
    yield c
    c.close()


# -- names ----------------------------------------------------------------------------------

BAD_NAMES = ["Lecture/App", "UPPER", "..", "lecture/../etc", "../../etc", "a" * 256,
             "x/" * 128 + "y", "lecture//app", "lecture/app/", "-lead", "trail-", "a..b",
             "%2e%2e/x", "lecture/app%00", "lecture/%20app", "a_", "_a", "lecture/.hidden"]


def name_requests(name: str) -> list[tuple[str, str]]:
    return [("GET", f"/v2/{name}/manifests/1"), ("HEAD", f"/v2/{name}/manifests/1"),
            ("GET", f"/v2/{name}/blobs/{sha(b'x')}"), ("GET", f"/v2/{name}/tags/list"),
            ("POST", f"/v2/{name}/blobs/uploads/"), ("PUT", f"/v2/{name}/manifests/1"),
            ("PATCH", f"/v2/{name}/blobs/uploads/{'a' * 32}")]


def test_bad_repository_names_are_name_invalid(server, client):
    refused = total = 0
    for name in BAD_NAMES:
        for method, path in name_requests(name):
            status, headers, body = client(method, path, b"{}" if method == "PUT" else None)
            total += 1
            assert status == 400, (method, path, status)
            if method != "HEAD":  # a HEAD answer has no body
                assert codes(body) == ["NAME_INVALID"], (method, path, body)
            refused += 1
    longest = "a" * 255  # the limit itself is a valid name
    assert client("POST", f"/v2/{longest}/blobs/uploads/")[0] == 202
    print(f"\nbad repository names refused with NAME_INVALID {refused}/{total}")
    assert refused == total == len(BAD_NAMES) * 7
    assert sorted(p.name for p in (server.root / "repositories").iterdir()) == [longest]


# -- digests --------------------------------------------------------------------------------

BAD_DIGESTS = ["sha256:xyz", "sha256:" + "0" * 63, "sha256:" + "0" * 65, "sha256:" + "A" * 64,
               "md5:" + "0" * 32, "sha512:" + "0" * 128, "sha256:", "sha256:" + "g" * 64,
               "sha256:..%2f..%2f" + "0" * 58, ":" + "0" * 64]


def test_bad_digests_are_digest_invalid(server, client):
    push_blob(client, "lecture/base", b"base")  # a repository for the reads and the mount
    before = files_under(server.root)
    answers = []
    for digest in BAD_DIGESTS:
        _, headers, _ = client("POST", "/v2/lecture/app/blobs/uploads/")
        for method, path, body in (
                ("GET", f"/v2/lecture/base/blobs/{digest}", None),
                ("GET", f"/v2/lecture/base/manifests/{digest}", None),
                ("PUT", f"/v2/lecture/base/manifests/{digest}", b"{}"),
                ("PUT", f"{headers['Location']}?digest={digest}", b"data"),
                ("POST", f"/v2/lecture/app/blobs/uploads/?digest={digest}", b"data"),
                ("POST", f"/v2/lecture/app/blobs/uploads/?mount={digest}&from=lecture/base", None)):
            status, _, answer = client(method, path, body)
            answers.append((status, codes(answer)))
            assert (status, codes(answer)) == (400, ["DIGEST_INVALID"]), (method, path, answer)
    print(f"\nbad digests refused with DIGEST_INVALID {len(answers)}/{len(BAD_DIGESTS) * 6}")
    assert uploads_left(server) == []
    after = files_under(server.root)
    assert {k: v for k, v in after.items() if k.startswith("blobs/")} == \
        {k: v for k, v in before.items() if k.startswith("blobs/")}


# -- oversize manifests and blobs ------------------------------------------------------------

def padded_manifest(client: Client, total_bytes: int) -> bytes:
    """A valid manifest of exactly `total_bytes`, padded with an annotation."""
    doc = json.loads(image(client, "lecture/app", [b"layer"]))
    doc["annotations"] = {"pad": ""}
    short = len(json.dumps(doc).encode())
    doc["annotations"]["pad"] = "x" * (total_bytes - short)
    data = json.dumps(doc).encode()
    assert len(data) == total_bytes
    return data


def test_oversize_manifests_are_413_and_leave_nothing(server, client):
    over = padded_manifest(client, MAX_MANIFEST_BYTES + 1)
    blobs_before = files_under(server.root)
    for headers in ({"Content-Type": OCI_MANIFEST},
                    {"Content-Type": OCI_MANIFEST, "Transfer-Encoding": "chunked"}):
        body = over if "Transfer-Encoding" not in headers else \
            (over[i:i + 65536] for i in range(0, len(over), 65536))
        status, _, answer = client("PUT", "/v2/lecture/app/manifests/big", body, headers)
        assert (status, codes(answer)) == (413, ["SIZE_INVALID"])
    assert client("GET", "/v2/lecture/app/manifests/big")[0] == 404
    assert files_under(server.root) == blobs_before
    exact = padded_manifest(client, MAX_MANIFEST_BYTES)  # the limit itself is accepted
    status, headers, _ = client("PUT", "/v2/lecture/app/manifests/edge", exact, {"Content-Type": OCI_MANIFEST})
    assert status == 201 and headers["Docker-Content-Digest"] == sha(exact)


def test_oversize_blobs_are_refused_and_their_sessions_dropped(server, client):
    too_big = os.urandom(MAX_BLOB_BYTES + 1)
    refused = []

    def refuse(status: int, body: bytes, location: str | None) -> None:
        assert (status, codes(body)) == (413, ["SIZE_INVALID"]), body
        if location:  # the session could never be finished: it is gone
            assert client("GET", location)[0] == 404
        refused.append(status)

    # one PUT with a Content-Length past the cap: refused before a byte is written
    _, headers, _ = client("POST", "/v2/lecture/app/blobs/uploads/")
    status, _, body = client("PUT", f"{headers['Location']}?digest={sha(too_big)}", too_big)
    refuse(status, body, headers["Location"])
    # a monolithic POST
    status, _, body = client("POST", f"/v2/lecture/app/blobs/uploads/?digest={sha(too_big)}", too_big)
    refuse(status, body, None)
    # one streamed PATCH (chunked coding: no length known in advance), 3x the cap
    _, headers, _ = client("POST", "/v2/lecture/app/blobs/uploads/")
    stream = (os.urandom(100_000) for _ in range(30))
    status, _, body = client("PATCH", headers["Location"], stream, {"Transfer-Encoding": "chunked"})
    refuse(status, body, headers["Location"])
    # chunks that are each fine but add up past the cap
    _, headers, _ = client("POST", "/v2/lecture/app/blobs/uploads/")
    status, headers, _ = client("PATCH", headers["Location"], too_big[:600_000], {"Content-Range": "0-599999"})
    assert status == 202
    status, _, body = client("PATCH", headers["Location"], too_big[600_000:],
                             {"Content-Range": f"600000-{len(too_big) - 1}"})
    refuse(status, body, headers["Location"])

    print(f"\noversize blobs refused {len(refused)}/4")
    assert uploads_left(server) == [] and list((server.root / "blobs" / "sha256").glob("*")) == []
    exact = too_big[:MAX_BLOB_BYTES]  # the cap itself is accepted
    assert push_blob(client, "lecture/app", exact) == sha(exact)


# -- abandoned sessions ----------------------------------------------------------------------

def test_abandoned_sessions_are_reaped_with_their_bytes(server, client):
    """Sessions nobody touches for `upload_idle_s` vanish with their files; one that
    keeps talking survives the same time and is then finished."""
    before = files_under(server.root)
    abandoned = []
    for size in (0, 300_000, 700_000):
        _, headers, _ = client("POST", "/v2/lecture/app/blobs/uploads/")
        if size:
            client("PATCH", headers["Location"], os.urandom(size), {"Content-Range": f"0-{size - 1}"})
        abandoned.append(headers["Location"])
    data = os.urandom(200_000)
    _, headers, _ = client("POST", "/v2/lecture/app/blobs/uploads/")
    alive = headers["Location"]
    client("PATCH", alive, data[:100_000], {"Content-Range": "0-99999"})
    assert len(uploads_left(server)) == 4
    on_disk = sum(files_under(server.root).values())

    started = time.monotonic()
    while len(uploads_left(server)) > 1 and time.monotonic() - started < 10 * IDLE_S:
        assert client("GET", alive)[0] == 204  # activity keeps it
        time.sleep(IDLE_S / 4)
    reaped_after_s = time.monotonic() - started
    for location in abandoned:
        status, _, body = client("GET", location)
        assert (status, codes(body)) == (404, ["BLOB_UPLOAD_UNKNOWN"])
    assert len(uploads_left(server)) == 1
    status, _, _ = client("PUT", f"{alive}?digest={sha(data)}", data[100_000:],
                          {"Content-Range": "100000-199999"})
    assert status == 201
    after = files_under(server.root)
    print(f"\nabandoned sessions reaped 3/3 within {reaped_after_s:.2f} s (idle limit {IDLE_S} s); "
          f"registry files {sum(before.values())} B before, {on_disk} B with the sessions, "
          f"{sum(after.values())} B after (the one blob pushed)")
    assert after == {**before, f"blobs/sha256/{sha(data)[7:]}": len(data)}
    assert reaped_after_s < 3 * IDLE_S + 1.0


def test_a_slow_patch_is_activity_not_idleness(server, client):
    """A PATCH whose body takes twice the idle limit to arrive is not reaped under
    it, nor right after it: the upload then finishes."""
    data = os.urandom(400_000)
    _, headers, _ = client("POST", "/v2/lecture/app/blobs/uploads/")

    def slowly():
        for first in range(0, len(data), 100_000):
            time.sleep(IDLE_S / 2)
            yield data[first:first + 100_000]

    status, headers, _ = client("PATCH", headers["Location"], slowly(), {"Transfer-Encoding": "chunked"})
    assert status == 202 and headers["Range"] == f"0-{len(data) - 1}"
    status, _, _ = client("PUT", f"{headers['Location']}?digest={sha(data)}")
    assert status == 201 and uploads_left(server) == []


# -- concurrent pushes of one blob ----------------------------------------------------------

def test_concurrent_pushes_of_one_blob_store_one_copy(server):
    """Sixteen clients push one blob at once, in every way a client can (and two
    with a wrong digest, one giving up): the good ones all get 201, the bad ones a
    clean 400, and the root holds exactly one copy and no upload file."""
    data = os.urandom(900_000)
    results: dict[str, list[tuple[int, list[str]]]] = {}
    start = threading.Barrier(16)

    def push(i: int) -> None:
        c = Client(server.url)
        name, kind = f"team{i % 3}/app", ("monolithic", "post", "chunks", "stream", "mount",
                                          "wrong digest", "abandon")[i % 7]
        try:
            start.wait()
            if kind == "post":
                status, _, body = c("POST", f"/v2/{name}/blobs/uploads/?digest={sha(data)}", data)
            elif kind == "mount":
                status, headers, body = c("POST", f"/v2/{name}/blobs/uploads/?mount={sha(data)}&from=team0/app")
                if status == 202:  # not there yet: upload it after all
                    status, _, body = c("PUT", f"{headers['Location']}?digest={sha(data)}", data)
            else:
                _, headers, _ = c("POST", f"/v2/{name}/blobs/uploads/")
                location = headers["Location"]
                if kind == "chunks":
                    for first in range(0, len(data), 300_000):
                        _, headers, _ = c("PATCH", location, data[first:first + 300_000],
                                          {"Content-Range": f"{first}-{first + 299_999}"})
                        location = headers["Location"]
                    status, _, body = c("PUT", f"{location}?digest={sha(data)}")
                elif kind == "stream":
                    pieces = (data[j:j + 65536] for j in range(0, len(data), 65536))
                    c("PATCH", location, pieces, {"Transfer-Encoding": "chunked"})
                    status, _, body = c("PUT", f"{location}?digest={sha(data)}")
                elif kind == "wrong digest":
                    status, _, body = c("PUT", f"{location}?digest={sha(data + b'!')}", data)
                elif kind == "abandon":
                    c("PATCH", location, data[:400_000], {"Content-Range": "0-399999"})
                    status, _, body = c("DELETE", location)
                else:
                    status, _, body = c("PUT", f"{location}?digest={sha(data)}", data)
            results.setdefault(kind, []).append((status, codes(body) if body else []))
        finally:
            c.close()

    threads = [threading.Thread(target=push, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    good = [r for kind, rs in results.items() if kind not in ("wrong digest", "abandon") for r in rs]
    assert sum(len(rs) for rs in results.values()) == 16, results
    assert good == [(201, [])] * len(good), results
    assert results["wrong digest"] == [(400, ["DIGEST_INVALID"])] * 2
    assert results["abandon"] == [(204, [])] * 2
    blobs = sorted((server.root / "blobs" / "sha256").iterdir())
    assert [b.name for b in blobs] == [sha(data)[7:]] and blobs[0].read_bytes() == data
    assert uploads_left(server) == []
    print(f"\nconcurrent pushes of one blob: {len(good)}/{len(good)} succeeded, "
          f"2/2 wrong digests refused, 2 abandoned; blobs stored: {len(blobs)}, "
          f"upload files left: {len(uploads_left(server))}")


def test_a_layer_descriptor_past_the_cap_is_never_fetched(server, client):
    """A manifest may name a blob the registry refused: the PUT says which one."""
    manifest = json.loads(image(client, "lecture/app", [b"ok"]))
    manifest["layers"].append({"mediaType": LAYER, "digest": sha(b"z" * (MAX_BLOB_BYTES + 1)),
                               "size": MAX_BLOB_BYTES + 1})
    status, _, body = client("PUT", "/v2/lecture/app/manifests/1", json.dumps(manifest).encode(),
                             {"Content-Type": OCI_MANIFEST})
    assert (status, codes(body)) == (400, ["MANIFEST_BLOB_UNKNOWN"])
