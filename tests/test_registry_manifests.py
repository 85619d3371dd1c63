"""Manifest PUTs to docksim's registry over real HTTP: by tag and by digest, the
checks before a manifest is accepted (blobs present, sizes, media types, JSON,
4 MiB), one error per missing blob, and an index that needs its manifests."""
from __future__ import annotations

import json

import pytest

from tests.test_registry_push import (LAYER, OCI_INDEX, OCI_MANIFEST, codes, image, sha,
                                      client, server)  # noqa: F401 (fixtures)


# -- manifests ---------------------------------------------------------------------------

def test_put_manifest_by_tag_then_pull_it(client):
    manifest = image(client, "lecture/app", [b"layer one", b"layer two"])
    status, headers, _ = client("PUT", "/v2/lecture/app/manifests/v1", manifest, {"Content-Type": OCI_MANIFEST})
    assert status == 201
    assert headers["Docker-Content-Digest"] == sha(manifest)
    assert headers["Location"] == f"/v2/lecture/app/manifests/{sha(manifest)}"
    for reference in ("v1", sha(manifest)):
        status, headers, body = client("GET", f"/v2/lecture/app/manifests/{reference}")
        assert (status, body, headers["Content-Type"]) == (200, manifest, OCI_MANIFEST)
    assert json.loads(client("GET", "/v2/lecture/app/tags/list")[2]) == {"name": "lecture/app", "tags": ["v1"]}
    assert "lecture/app" in json.loads(client("GET", "/v2/_catalog")[2])["repositories"]


def test_put_manifest_by_digest(client):
    manifest = image(client, "lecture/app", [b"layer"])
    status, _, _ = client("PUT", f"/v2/lecture/app/manifests/{sha(manifest)}", manifest,
                          {"Content-Type": OCI_MANIFEST})
    assert status == 201
    status, _, body = client("PUT", f"/v2/lecture/app/manifests/{sha(b'other')}", manifest,
                             {"Content-Type": OCI_MANIFEST})
    assert status == 400 and codes(body) == ["DIGEST_INVALID"]


def test_manifest_naming_unknown_blobs(client):
    manifest = json.loads(image(client, "lecture/app", [b"known"]))
    manifest["layers"] += [{"mediaType": LAYER, "digest": sha(b"gone 1"), "size": 6},
                           {"mediaType": LAYER, "digest": sha(b"gone 2"), "size": 6}]
    status, _, body = client("PUT", "/v2/lecture/app/manifests/v1", json.dumps(manifest).encode(),
                             {"Content-Type": OCI_MANIFEST})
    assert status == 400 and codes(body) == ["MANIFEST_BLOB_UNKNOWN"] * 2
    details = [e["detail"]["digest"] for e in json.loads(body)["errors"]]
    assert details == [sha(b"gone 1"), sha(b"gone 2")]
    assert client("GET", "/v2/lecture/app/manifests/v1")[0] == 404


def mutate(manifest: bytes, **changes) -> bytes:
    doc = json.loads(manifest)
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize("change, content_type, status, code", [
    (lambda m: b"{not json", OCI_MANIFEST, 400, "MANIFEST_INVALID"),
    (lambda m: mutate(m, schemaVersion=1), OCI_MANIFEST, 400, "MANIFEST_INVALID"),
    (lambda m: m, "application/vnd.docker.distribution.manifest.v2+json", 400, "MANIFEST_INVALID"),
    (lambda m: mutate(m, mediaType="application/vnd.example+json"), "application/vnd.example+json",
     400, "MANIFEST_INVALID"),
    (lambda m: mutate(m, layers="nope"), OCI_MANIFEST, 400, "MANIFEST_INVALID"),
    (lambda m: mutate(m, config={"digest": "sha256:xyz", "size": 1}), OCI_MANIFEST, 400, "MANIFEST_INVALID"),
    (lambda m: mutate(m, layers=[{**json.loads(m)["layers"][0], "size": 999}]), OCI_MANIFEST,
     400, "SIZE_INVALID"),
    (lambda m: mutate(m, annotations={"pad": "x" * (5 << 20)}), OCI_MANIFEST, 413, "SIZE_INVALID"),
])
def test_bad_manifests_are_refused(client, change, content_type, status, code):
    manifest = change(image(client, "lecture/app", [b"layer"]))
    got, _, body = client("PUT", "/v2/lecture/app/manifests/v1", manifest, {"Content-Type": content_type})
    assert (got, codes(body)[0]) == (status, code)
    assert client("GET", "/v2/lecture/app/manifests/v1")[0] == 404


def test_bad_tag_is_refused(client):
    manifest = image(client, "lecture/app", [b"layer"])
    status, _, body = client("PUT", "/v2/lecture/app/manifests/-bad", manifest, {"Content-Type": OCI_MANIFEST})
    assert status == 400 and codes(body) == ["TAG_INVALID"]


def test_an_index_needs_its_manifests(client):
    manifest = image(client, "lecture/app", [b"layer"])
    entry = {"mediaType": OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest),
             "platform": {"architecture": "amd64", "os": "linux"}}
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}).encode()
    status, _, body = client("PUT", "/v2/lecture/app/manifests/multi", index, {"Content-Type": OCI_INDEX})
    assert status == 400 and codes(body) == ["MANIFEST_BLOB_UNKNOWN"]
    assert client("PUT", f"/v2/lecture/app/manifests/{sha(manifest)}", manifest,
                  {"Content-Type": OCI_MANIFEST})[0] == 201
    assert client("PUT", "/v2/lecture/app/manifests/multi", index, {"Content-Type": OCI_INDEX})[0] == 201
    status, headers, body = client("GET", "/v2/lecture/app/manifests/multi")
    assert (status, headers["Content-Type"], body) == (200, OCI_INDEX, index)
