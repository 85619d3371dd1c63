"""The pull pipeline when things go wrong, in this process against docksim's
registry: a connection cut mid-blob (Range resume), retries with Docker's linear
back-off and their limit of 5, a blob that does not match its digest, and blobs
that match but hold a hostile tar, the wrong diff_id or broken gzip.  After a
failure the failed layer leaves nothing behind.  Needs root."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from launcher.download import RetryPolicy
from launcher.manifest import host_arch
from launcher.registry_client import PullError
from launcher.store import Store
from registry.faults import Faults
from registry.layout import RegistryLayout
from registry.server import RegistryServer
from tests.test_pull_formats import pull, root, server, store_is_empty, stores  # noqa: F401 (fixtures)
from tests.test_unpack import entry, make_tar

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="unpacking layers needs root")


def nothing_of(store: Store, root: Path, repository: str, index: int) -> bool:
    """After a failed pull: no image, no temp file, and nothing of the failed layer
    (layers registered completely before the failure may stay, as in containerd)."""
    layout = RegistryLayout(root)
    manifest = json.loads(layout.blob_path(layout.resolve_tag(repository, "1")).read_bytes())
    config = json.loads(layout.blob_path(manifest["config"]["digest"]).read_bytes())
    return (not os.listdir(store.root / "tmp") and store.list_images() == []
            and not store.has_layer(config["rootfs"]["diff_ids"][index])
            and not store.has_blob(manifest["layers"][index]["digest"]))


# -- resume and retries --------------------------------------------------------------

def app_layer(root: Path) -> dict:
    layout = RegistryLayout(root)
    manifest = json.loads(layout.blob_path(layout.resolve_tag("fmt/oci-plain", "1")).read_bytes())
    return manifest["layers"][1]  # 1.5 MB of random data, uncompressed


def blob_lines(registry_log, digest: str) -> list[tuple[float, str]]:
    return [(created, line) for created, line in zip(registry_log.times, registry_log.lines)
            if line.startswith("GET ") and digest[:19] in line]


@pytest.fixture
def registry_log(registry_log):
    """The shared log collector, with each line's time."""
    registry_log.times = []
    emit = registry_log.emit

    def timed(record):
        registry_log.times.append(record.created)
        emit(record)
    registry_log.emit = timed
    return registry_log


def test_a_cut_connection_resumes_with_range(root, stores, registry_log):
    layer = app_layer(root)
    faults = Faults(cut_after_bytes=300_000, times=1, match=layer["digest"])
    with RegistryServer(root, faults=faults) as server:
        record, messages, phases = pull(server.url, "fmt/oci-plain:1", stores())
    lines = [line for _, line in blob_lines(registry_log, layer["digest"])]
    assert len(lines) == 2 and " 200 300000 B " in lines[0]
    assert f" 206 {layer['size'] - 300_000} B " in lines[1]
    download = [d for d in phases["download"] if d["layer"] == layer["digest"][7:19]][0]
    assert download["bytes"] == layer["size"]  # each byte crossed the network once
    statuses = [m["status"] for m in messages if m.get("id") == layer["digest"][7:19]]
    assert "Retrying in 1 second" in statuses
    assert statuses.index("Retrying in 1 second") < statuses.index("Download complete")


def test_retries_back_off_linearly(root, stores, registry_log):
    """Three cuts: four attempts in all, waiting 1, 2 and 3 units between them
    (dockerd: 5 s x the failures so far)."""
    unit_s = 0.3
    digest = app_layer(root)["digest"]
    with RegistryServer(root, faults=Faults(cut_after_bytes=200_000, times=3, match=digest)) as server:
        pull(server.url, "fmt/oci-plain:1", stores(), retry=RetryPolicy(5, unit_s))
    times = [t for t, _ in blob_lines(registry_log, digest)]
    assert len(times) == 4
    gaps = [b - a for a, b in zip(times, times[1:])]
    for failures, gap in enumerate(gaps, start=1):
        assert failures * unit_s <= gap < failures * unit_s + 0.25, gaps  # slack: a loaded machine


def test_five_failed_attempts_fail_the_pull_and_leave_nothing(root, stores, registry_log):
    store = stores()
    layer = app_layer(root)
    faults = Faults(cut_after_bytes=100_000, times=5, match=layer["digest"])
    with RegistryServer(root, faults=faults) as server:
        with pytest.raises(PullError, match="gave up after 5 attempts"):
            pull(server.url, "fmt/oci-plain:1", store)
    assert len(blob_lines(registry_log, layer["digest"])) == 5
    assert nothing_of(store, root, "fmt/oci-plain", 1)


def test_a_corrupt_zstd_blob_leaves_nothing(root, stores, tmp_path):
    layout = RegistryLayout(root)
    manifest = json.loads(layout.blob_path(layout.resolve_tag("fmt/oci-zstd", "1")).read_bytes())
    shutil.copytree(root, tmp_path / "copy")
    blob = RegistryLayout(tmp_path / "copy").blob_path(manifest["layers"][1]["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.unlink()
    blob.write_bytes(bytes(data))
    store = stores()
    with RegistryServer(tmp_path / "copy") as server:
        with pytest.raises(PullError, match="digest"):
            pull(server.url, "fmt/oci-zstd:1", store)
    assert nothing_of(store, root, "fmt/oci-zstd", 1)


# -- layers whose blob digest matches but whose content is bad --------------------------

def publish_single(layout: RegistryLayout, repository: str, blob: bytes, diff_id: str) -> None:
    """An image of one layer blob, listed with `diff_id` in its config."""
    config = json.dumps({"architecture": host_arch(), "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": layout.put_blob(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": layout.put_blob(blob), "size": len(blob)}]}).encode()
    layout.ensure_repository(repository)
    layout.set_tag(repository, "1", layout.put_blob(manifest))


HOSTILE_TAR = make_tar([entry("ok", data=b"fine"), entry("../escape", data=b"x")])
GOOD_TAR = make_tar([entry("ok", data=b"fine" * 10_000)])


@pytest.mark.parametrize("blob, diff_id, message", [
    (gzip.compress(HOSTILE_TAR), "sha256:" + hashlib.sha256(HOSTILE_TAR).hexdigest(),
     "entry '../escape': path leaves the layer"),
    (gzip.compress(GOOD_TAR), "sha256:" + "0" * 64, "uncompressed content has digest"),
    (gzip.compress(GOOD_TAR)[:-30], "sha256:" + hashlib.sha256(GOOD_TAR).hexdigest(),
     "broken compressed data"),
])
def test_bad_layer_content_fails_the_pull_and_leaves_nothing(root, server, stores, blob, diff_id, message):
    repository = f"fmt/bad-{hashlib.sha256(blob).hexdigest()[:8]}"
    publish_single(RegistryLayout(root), repository, blob, diff_id)
    store = stores()
    with pytest.raises(PullError, match=message):
        pull(server.url, f"{repository}:1", store)
    assert store_is_empty(store) and not (store.root.parent / "escape").exists()
    assert not store.has_blob("sha256:" + hashlib.sha256(blob).hexdigest())
