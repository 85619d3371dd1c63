"""`docker pull` against the daemon, through the Docker SDK: the progress stream,
the image records, the download/extract pipeline (shared downloads, the
max-concurrent-downloads pool, bottom-to-top extraction) and a corrupt blob.

Every test starts a fresh daemon with an empty store.
"""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

from registry.server import RegistryServer
from tests.conftest import (ALPHA, BETA, GAMMA, phase_events, pull_stream, short_id,
                            statuses_by_layer)

FULL_PULL = ["Pulling fs layer", "Downloading", "Verifying Checksum", "Download complete",
             "Extracting", "Pull complete"]


def test_pull_progress_stream(start_daemon, registry, built):
    """Per layer: Pulling fs layer, Downloading, Verifying Checksum, Download
    complete, Extracting, Pull complete, in that order; Downloading counts up to
    the blob size; then the manifest's digest and the final status."""
    client = start_daemon(registry.url).client()
    messages = pull_stream(client, ALPHA)
    assert not [m for m in messages if "error" in m]
    assert messages[0] == {"status": "Pulling from docksim-test/alpha", "id": "1"}
    by_layer = statuses_by_layer(messages)
    assert list(by_layer) == built.layer_ids(ALPHA)
    assert all(statuses == FULL_PULL for statuses in by_layer.values()), by_layer

    big = built.report.layers["big"]
    progress = [m["progressDetail"] for m in messages
                if m.get("id") == short_id(big.digest) and m["status"] == "Downloading"]
    assert {p["total"] for p in progress} == {big.compressed_bytes}
    currents = [p["current"] for p in progress]
    assert currents == sorted(currents) and currents[-1] == big.compressed_bytes

    assert messages[-2] == {"status": f"Digest: {built.report.images[ALPHA].manifest_digest}"}
    assert messages[-1] == {"status": f"Status: Downloaded newer image for {ALPHA}"}


def test_shared_layer_already_exists(start_daemon, registry, built):
    """A second image on the same base layer reports "Already exists" for it and
    downloads only its own layer."""
    client = start_daemon(registry.url).client()
    pull_stream(client, ALPHA)
    by_layer = statuses_by_layer(pull_stream(client, BETA))
    base, extra = built.layer_ids(BETA)
    assert by_layer == {base: ["Already exists"], extra: FULL_PULL}


def test_image_records(start_daemon, registry, built):
    """`images.list()` and `images.get(ref).attrs`: RepoTags, RepoDigests, Id = the
    config digest, RootFS.Layers = the diff_ids bottom first, Size = unpacked bytes."""
    client = start_daemon(registry.url).client()
    assert client.images.list() == []
    for ref in (ALPHA, GAMMA):
        repository, tag = ref.rsplit(":", 1)
        client.images.pull(repository, tag=tag)

    listed = {image.id: image.tags for image in client.images.list()}
    report = built.report
    assert listed == {report.images[ALPHA].config_digest: [ALPHA],
                      report.images[GAMMA].config_digest: [GAMMA]}
    for ref in (ALPHA, GAMMA):
        attrs = client.images.get(ref).attrs
        image = report.images[ref]
        assert attrs["Id"] == image.config_digest
        assert attrs["RepoTags"] == [ref]
        assert attrs["RepoDigests"] == [f"{ref.rsplit(':', 1)[0]}@{image.manifest_digest}"]
        assert attrs["RootFS"] == {"Type": "layers",
                                   "Layers": [report.layers[n].diff_id for n in image.layers]}
        assert attrs["Size"] == image.content_bytes
        assert attrs["Config"]["Cmd"] == ["/bin/sh"]
    assert client.images.get(report.images[GAMMA].config_digest[7:19]).tags == [GAMMA]


def test_two_clients_pulling_at_once_fetch_each_blob_once(start_daemon, slow_registry, built,
                                                          registry_log):
    """Two clients pull one image at the same moment over a slow link: each layer is
    fetched by one pull while the other waits for it (dockerd's shared downloads);
    each blob crosses the link once and both pulls succeed."""
    daemon = start_daemon(slow_registry.url)
    clients = [daemon.client(), daemon.client()]
    for client in clients:
        client.ping()  # connections open before the race starts
    registry_log.lines.clear()
    start = threading.Barrier(2)
    streams: dict[int, list[dict]] = {}

    def pull(i: int) -> None:
        start.wait()
        streams[i] = pull_stream(clients[i], ALPHA)

    threads = [threading.Thread(target=pull, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    digest = built.report.images[ALPHA].manifest_digest
    for i in (0, 1):
        assert not [m for m in streams[i] if "error" in m], streams[i]
        assert {"status": f"Digest: {digest}"} in streams[i]
    layer_ids = built.layer_ids(ALPHA)
    gets = registry_log.blob_gets()
    assert {layer: gets.get(layer) for layer in layer_ids} == {layer: 1 for layer in layer_ids}
    statuses = [statuses_by_layer(streams[i]) for i in (0, 1)]
    for layer in layer_ids:
        firsts = sorted(s[layer][0] for s in statuses)
        assert firsts == ["Pulling fs layer", "Waiting"], statuses
    for client in clients:
        assert client.images.get(ALPHA).id == built.report.images[ALPHA].config_digest
        client.close()


def pull_phases(daemon, ref: str, tag: str) -> dict[str, list[dict]]:
    client = daemon.client()
    try:
        messages = pull_stream(client, ref, request_tag=tag)
        assert not [m for m in messages if "error" in m], messages
        events = phase_events(client, tag)
    finally:
        client.close()
    by_phase: dict[str, list[dict]] = {}
    for event in sorted(events, key=lambda e: e["start"]):
        assert event["request"] == tag
        by_phase.setdefault(event["phase"], []).append(event)
    return by_phase


def test_one_download_slot_serialises_downloads(start_daemon, slow_registry, built):
    """`--max-concurrent-downloads 1`: one layer blob at a time, each download
    starting after the previous one ended."""
    by_phase = pull_phases(start_daemon(slow_registry.url, max_concurrent_downloads=1),
                           GAMMA, "one-slot")
    downloads = by_phase["download"]
    assert sorted(d["layer"] for d in downloads) == sorted(built.layer_ids(GAMMA))
    for before, after in zip(downloads, downloads[1:]):
        assert after["start"] >= before["end"], downloads


def test_three_download_slots_overlap_and_extraction_goes_bottom_up(start_daemon, slow_registry,
                                                                   built):
    """With 3 slots the 3 downloads run at once; each layer is extracted while and
    after its own download (the pipeline streams: extract begins once its first
    bytes are in and ends after its download) and after the layer below it
    (Docker's bottom-to-top order), and the phases carry the right byte counts."""
    by_phase = pull_phases(start_daemon(slow_registry.url, max_concurrent_downloads=3),
                           GAMMA, "three-slots")
    assert set(by_phase) == {"resolve", "download", "extract", "pull"}
    downloads = {d["layer"]: d for d in by_phase["download"]}
    assert max(d["start"] for d in downloads.values()) < min(d["end"] for d in downloads.values())

    layers = {short_id(built.report.layers[n].digest): built.report.layers[n]
              for n in built.report.images[GAMMA].layers}
    extracts = by_phase["extract"]
    assert [e["layer"] for e in extracts] == built.layer_ids(GAMMA)
    for i, extract in enumerate(extracts):
        download = downloads[extract["layer"]]
        assert download["start"] <= extract["start"] and extract["end"] >= download["end"]
        if i:
            assert extract["start"] >= extracts[i - 1]["end"]
        assert extract["bytes"] == layers[extract["layer"]].content_bytes
    for layer, download in downloads.items():
        assert download["bytes"] == layers[layer].compressed_bytes

    (resolve,), (pull,) = by_phase["resolve"], by_phase["pull"]
    assert pull["start"] <= resolve["start"] and resolve["end"] <= min(d["start"] for d in downloads.values())
    assert pull["end"] >= extracts[-1]["end"]


def corrupt_copy(built, destination: Path, layer_name: str) -> Path:
    """A copy of the registry root whose blob for `layer_name` has one byte flipped
    (same size).  Files are copied, never hard-linked, so the build cache is safe."""
    shutil.copytree(built.root, destination)
    blob = destination / "blobs" / "sha256" / built.report.layers[layer_name].digest.split(":")[1]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.unlink()  # the copy may share nothing, but never write through a link
    blob.write_bytes(bytes(data))
    return blob


def test_corrupt_blob_fails_the_pull_and_leaves_nothing(start_daemon, built, tmp_path):
    """A layer blob whose bytes do not match its digest fails the pull with an error
    naming the layer and "digest"; no image, layer, blob or temp file stays."""
    corrupt_copy(built, tmp_path / "registry", "big")
    with RegistryServer(tmp_path / "registry") as broken:
        daemon = start_daemon(broken.url)
        client = daemon.client()
        messages = pull_stream(client, ALPHA)
    errors = [m for m in messages if "error" in m]
    assert len(errors) == 1 and errors == messages[-1:], messages
    big = built.report.layers["big"]
    message = errors[0]["error"]
    assert errors[0]["errorDetail"] == {"message": message}
    assert short_id(big.digest) in message and "digest" in message
    assert not [m for m in messages if m.get("status", "").startswith("Digest:")]

    assert client.images.list() == []
    store = daemon.root
    assert not (store / "layers" / "sha256" / big.diff_id.split(":")[1]).exists()
    assert not (store / "blobs" / "sha256" / big.digest.split(":")[1]).exists()
    assert list((store / "tmp").iterdir()) == []
    client.close()


def test_pull_after_a_failed_pull_succeeds(start_daemon, registry, built, tmp_path):
    """A failed pull does not poison the daemon: the same image from a good registry
    pulls afterwards (the layers it had claimed were released)."""
    corrupt_copy(built, tmp_path / "registry", "big")
    with RegistryServer(tmp_path / "registry") as broken:
        daemon = start_daemon(broken.url)
        client = daemon.client()
        assert "error" in pull_stream(client, ALPHA)[-1]
    good = f"127.0.0.1:{registry.port}/{ALPHA}"  # the same image, by the good registry's address
    messages = pull_stream(client, good)
    assert messages[-1] == {"status": f"Status: Downloaded newer image for {good}"}
    assert client.images.get(good).id == built.report.images[ALPHA].config_digest
    client.close()
