"""The pull pipeline when things go wrong.

In this process against docksim's registry: a connection cut mid-blob (Range
resume), retries with Docker's linear back-off and their limit of 5, a blob
that does not match its digest (downloaded again from scratch, the unpacker
starting over), and blobs that match but hold a hostile tar, the wrong diff_id
or broken gzip.  Then the real daemon, driven by the Docker SDK, against a
registry committing each fault kind of `[registry] faults` (503, 429 with
Retry-After, stalls short and long, cuts, flipped bytes, drips): every pull
succeeds with layers that match their digests, and a permanent fault fails the
pull with a message naming the layer and the cause.  After a failure the failed
layer leaves nothing behind.  Needs root."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from launcher.download import RetryPolicy
from launcher.manifest import host_arch
from launcher.registry_client import PullError
from launcher.store import Store
from registry.faults import Faults
from registry.layout import RegistryLayout
from registry.server import RegistryServer
from tests.conftest import phase_events, pull_stream, running_daemon, short_id
from tests.test_pull_formats import pull, root, server, store_is_empty, stores  # noqa: F401 (fixtures)
from tests.test_unpack import entry, make_tar
from vocab.faults import RegistryFaults

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
    """The registry's GET lines of blobs whose path has `digest`, with their times.
    A request's line is logged once its answer is sent, which may be after the
    client is done with it: wait until no line came for 0.1 s (at most 2 s)."""
    deadline = time.monotonic() + 2.0
    seen = -1
    while len(registry_log.lines) != seen and time.monotonic() < deadline:
        seen = len(registry_log.lines)
        time.sleep(0.1)
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


def test_a_429_waits_its_retry_after_not_the_back_off(root, stores, registry_log):
    spec = RegistryFaults(rate_limit_429_rate=1.0, retry_after_s=0.6, max_faults=1)
    with RegistryServer(root, faults=Faults(spec=spec)) as server:
        pull(server.url, "fmt/oci-plain:1", stores(), retry=RetryPolicy(5, 0.05))
    refused = [(t, line) for t, line in blob_lines(registry_log, "") if " 429 " in line]
    assert len(refused) == 1
    t_refused, line = refused[0]
    assert line.endswith("(fault: 429, Retry-After 0.6)")
    blob = line.split()[1]  # the same (shortened) blob path
    t_next = min(t for t, other in blob_lines(registry_log, "")
                 if other.split()[1] == blob and t > t_refused)
    assert 0.6 <= t_next - t_refused < 0.6 + 0.25  # not 0.05 s, the back-off


def test_a_stall_past_the_read_timeout_is_resumed_at_once(root, stores, registry_log):
    """The registry would be silent for 3 s; the read timeout (0.3 s) gives up,
    and the pull resumes with Range and ends long before the stall would have."""
    layer = app_layer(root)
    with RegistryServer(root, faults=Faults(spec=RegistryFaults(stall_rate=1.0, stall_s=3.0,
                                                                max_faults=1))) as server:
        began = time.monotonic()
        _, messages, phases = pull(server.url, "fmt/oci-plain:1", stores(),
                                   retry=RetryPolicy(5, 0.05, read_timeout_s=0.3))
        took_s = time.monotonic() - began
    assert took_s < 1.5
    stalled = [m for m in messages if m.get("status") == "Retrying in 1 second"]
    assert stalled, "the stalled download was not retried"
    resumed = [line for _, line in blob_lines(registry_log, "") if " 206 " in line]
    assert len(resumed) == 1
    total = sum(d["bytes"] for d in phases["download"])
    assert total == sum(layer["size"] for layer in manifest_layers(root, "fmt/oci-plain"))


def manifest_layers(root: Path, repository: str) -> list[dict]:
    layout = RegistryLayout(root)
    return json.loads(layout.blob_path(layout.resolve_tag(repository, "1")).read_bytes())["layers"]


@pytest.mark.parametrize("extract", ["serial", "parallel"])
def test_a_flipped_byte_is_fetched_again_from_scratch(root, stores, registry_log, extract):
    """Both layers' first GETs carry a flipped byte: the gzip base breaks its stream
    or its diff_id, the plain layer its digest.  Each is discarded and fetched again
    without Range; the unpacker starts over; what is stored matches every digest."""
    layout = RegistryLayout(root)
    manifest = json.loads(layout.blob_path(layout.resolve_tag("fmt/oci-gzip", "1")).read_bytes())
    faults = Faults(spec=RegistryFaults(flip_rate=1.0, max_faults=2))
    store = stores()
    with RegistryServer(root, faults=faults) as server:
        record, messages, phases = pull(server.url, "fmt/oci-gzip:1", store, extract=extract)
    assert faults.counts["flip"] == 2
    for layer in manifest["layers"]:
        lines = [line for _, line in blob_lines(registry_log, layer["digest"])]
        assert len(lines) == 2 and " (fault: flip at byte " in lines[0], lines
        assert all(f" 200 {layer['size']} B " in line for line in lines)  # never a Range
        download = [d for d in phases["download"] if d["layer"] == short_id(layer["digest"])][0]
        assert download["bytes"] == 2 * layer["size"]
        blob = store.blob_path(layer["digest"])
        assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == layer["digest"]
    assert all(store.has_layer(d) for d in record["diff_ids"]) and not os.listdir(store.root / "tmp")


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


# -- the daemon, through the Docker SDK, against each fault kind ---------------------------

BACKOFF_S, READ_TIMEOUT_S = 0.2, 0.5
DAEMON_ARGS = ("--retry-backoff-s", str(BACKOFF_S), "--read-timeout-s", str(READ_TIMEOUT_S))
ALPHA = "docksim-test/alpha:1"  # a gzip base (3 MB at 2.5) and 4 MB of random data
# Each kind strikes the first two blob GETs (both layers start at once), then no more.
KINDS = {
    "503": dict(error_503_rate=1.0),
    "429": dict(rate_limit_429_rate=1.0, retry_after_s=0.3),
    "stall below the read timeout": dict(stall_rate=1.0, stall_s=0.2),
    "stall past the read timeout": dict(stall_rate=1.0, stall_s=1.5),
    "cut": dict(cut_rate=1.0),
    "flip": dict(flip_rate=1.0),
    "drip": dict(drip_rate=1.0, drip_kbps=40_000),   # 5 MB/s
}
RETRIED = {"503", "429", "stall past the read timeout", "cut", "flip"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, built):
    """One daemon for the module (a fault registry per test, reached by host:port refs)."""
    with running_daemon("http://127.0.0.1:1", tmp_path_factory.mktemp("faults-daemon"),
                        extra_args=DAEMON_ARGS) as running:
        yield running


def stored_blob_ok(daemon, digest: str) -> bool:
    blob = daemon.root / "blobs" / "sha256" / digest.split(":", 1)[1]
    return blob.is_file() and "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == digest


def has_layer(daemon, diff_id: str) -> bool:
    return (daemon.root / "layers" / "sha256" / diff_id.split(":", 1)[1]).is_dir()


def pull_faulty(daemon, built, spec: RegistryFaults, tag: str):
    """Pull alpha from a registry with these faults: (messages, phase events, fault counts)."""
    faults = Faults(spec=spec, seed=1)
    with RegistryServer(built.root, faults=faults) as server:
        client = daemon.client()
        try:
            ref = f"127.0.0.1:{server.port}/{ALPHA}"
            messages = pull_stream(client, ref, tag)
            events = phase_events(client, tag)
            if not any("error" in m for m in messages):
                client.images.remove(ref)
        finally:
            client.close()
    return messages, events, faults.counts


def test_the_daemon_survives_every_fault_kind(daemon, built):
    layers = [built.report.layers[name] for name in built.report.images[ALPHA].layers]
    injected = survived = 0
    for number, (kind, rates) in enumerate(KINDS.items()):
        began = time.monotonic()
        messages, events, counts = pull_faulty(daemon, built, RegistryFaults(**rates, max_faults=2),
                                               f"kind-{number}")
        took_s = time.monotonic() - began
        errors = [m["error"] for m in messages if "error" in m]
        assert not errors, (kind, errors, daemon.log_tail())
        assert sum(counts.values()) == 2, (kind, counts)
        injected += 2
        survived += 1
        assert messages[-1]["status"].startswith("Status: Downloaded newer image"), kind
        retrying = [m for m in messages if m.get("status", "").startswith("Retrying in")]
        assert bool(retrying) == (kind in RETRIED), (kind, retrying)
        downloads = {e["layer"]: e for e in events if e["phase"] == "download"}
        for layer in layers:
            assert stored_blob_ok(daemon, layer.digest), (kind, layer.name)
            # bytes on the wire: a resume sends each byte once, a flip the blob twice
            wire = downloads[short_id(layer.digest)]["bytes"]
            assert wire == (2 if kind == "flip" else 1) * layer.compressed_bytes, (kind, layer.name)
        print(f"{kind}: pulled in {took_s:.2f} s, faults {counts}")
    assert not any(has_layer(daemon, layer.diff_id) for layer in layers)  # rmi removed them
    print(f"faults injected {injected}, survived {survived}")
    assert survived == len(KINDS)


@pytest.mark.parametrize("kind, rates, cause", [
    ("503", dict(error_503_rate=1.0), "GET answered 503 Service Unavailable"),
    ("429", dict(rate_limit_429_rate=1.0, retry_after_s=0.1), "GET answered 429 Too Many Requests"),
    ("flip", dict(flip_rate=1.0), "content does not match its digest"),
])
def test_a_permanent_fault_fails_the_pull_naming_layer_and_cause(daemon, built, kind, rates, cause):
    layers = [built.report.layers[name] for name in built.report.images[ALPHA].layers]
    image = built.report.images[ALPHA]
    blobs_before = set(os.listdir(daemon.root / "blobs" / "sha256"))
    messages, _, counts = pull_faulty(daemon, built, RegistryFaults(**rates), f"perm-{kind}")
    errors = [m for m in messages if "error" in m]
    assert len(errors) == 1 and errors[0] is messages[-1]
    text = errors[0]["error"]
    assert errors[0]["errorDetail"]["message"] == text
    named = [layer for layer in layers if f"layer {layer.digest}: " in text]
    assert len(named) == 1 and cause in text and "(gave up after 5 attempts)" in text, text
    assert counts[kind] >= 5
    print(f"permanent {kind}: {text}")
    # nothing partial: no image, no temp file, no layer, no new blob but the
    # manifest and config the resolve keeps (as containerd's content store does)
    client = daemon.client()
    try:
        assert client.images.list() == []
    finally:
        client.close()
    assert not os.listdir(daemon.root / "tmp")
    assert not any(has_layer(daemon, layer.diff_id) for layer in layers)
    new_blobs = set(os.listdir(daemon.root / "blobs" / "sha256")) - blobs_before
    assert new_blobs <= {image.manifest_digest[7:], image.config_digest[7:]}
