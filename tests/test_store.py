"""Store: atomic blobs, verified layer registration, image records, container dirs."""
from __future__ import annotations

import gzip
import hashlib
import os
import threading
from pathlib import Path

import pytest

from launcher import linux, runtime
from launcher.store import Store, normalize_ref
from launcher.unpack import LayerError
from tests.test_unpack import entry, make_tar, scratch  # noqa: F401 (fixture)

TAR = "application/vnd.oci.image.layer.v1.tar"
TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add_blob(store: Store, data: bytes) -> str:
    """Stream a blob into the store the way the puller does; returns its digest."""
    temp = store.new_temp()
    temp.write_bytes(data)
    digest = sha256(data)
    store.commit_blob(temp, digest)
    return digest


@pytest.fixture
def store(scratch: Path) -> Store:
    return Store(scratch / "store")


def store_is_clean(store: Store) -> bool:
    return os.listdir(store.root / "tmp") == [] and \
        os.listdir(store.root / "layers/sha256") == []


# --- blobs -------------------------------------------------------------------------

def test_blob_commit_is_an_atomic_rename(store: Store) -> None:
    data = b'{"schemaVersion": 2}'
    temp = store.new_temp()
    assert temp.parent == store.root / "tmp" and temp.read_bytes() == b""
    assert store.new_temp() != temp  # unique names
    temp.write_bytes(data)
    digest = sha256(data)
    assert not store.has_blob(digest)
    inode = temp.stat().st_ino

    store.commit_blob(temp, digest)

    final = store.blob_path(digest)
    assert final == store.root / "blobs/sha256" / digest[7:]
    assert store.has_blob(digest) and final.read_bytes() == data
    assert final.stat().st_ino == inode and not temp.exists()  # renamed, not copied


def test_unfinished_temp_never_shows_up_and_is_swept(store: Store) -> None:
    temp = store.new_temp()
    temp.write_bytes(b"half a blob")  # the daemon "crashes" before commit
    assert not store.has_blob(sha256(b"half a blob"))
    reopened = Store(store.root)
    assert os.listdir(reopened.root / "tmp") == []


@pytest.mark.parametrize("digest", ["sha256:../../etc/passwd", "md5:abcd",
                                    "sha256:" + "A" * 64, "sha256:" + "a" * 63])
def test_digests_are_validated_before_becoming_paths(store: Store, digest: str) -> None:
    with pytest.raises(ValueError, match="invalid digest"):
        store.blob_path(digest)


# --- layers --------------------------------------------------------------------------

LAYER = make_tar([entry("etc/", "dir"), entry("etc/hostname", data=b"box\n"),
                  entry("bin/", "dir"), entry("bin/tool", data=b"\x7fELF" * 100, mode=0o755)])


@pytest.mark.parametrize("media_type, compressed", [
    (TAR, False), (TAR_GZIP, True), (DOCKER_GZIP, True), ("", True), ("", False)])
def test_register_layer_unpacks_and_verifies(store: Store, media_type: str,
                                             compressed: bool) -> None:
    blob = gzip.compress(LAYER) if compressed else LAYER
    digest = add_blob(store, blob)
    diff_id = sha256(LAYER)

    written = store.register_layer(store.blob_path(digest), diff_id, media_type)

    assert written == 4 + 400
    assert store.has_layer(diff_id) and store.layer_size(diff_id) == written
    assert (store.layer_dir(diff_id) / "etc/hostname").read_bytes() == b"box\n"
    assert os.listdir(store.root / "tmp") == []
    # a second registration finds it ("Already exists") and does no work
    assert store.register_layer(Path("/nonexistent"), diff_id, media_type) == written


def test_wrong_diff_id_leaves_nothing(store: Store) -> None:
    digest = add_blob(store, gzip.compress(LAYER))
    wrong = sha256(b"something else")
    with pytest.raises(LayerError) as caught:
        store.register_layer(store.blob_path(digest), wrong, TAR_GZIP)
    assert str(caught.value).startswith(f"layer {wrong}: uncompressed content has digest "
                                        f"{sha256(LAYER)}")
    assert not store.has_layer(wrong) and store_is_clean(store)


def test_truncated_gzip_leaves_nothing(store: Store) -> None:
    compressed = gzip.compress(LAYER)
    digest = add_blob(store, compressed[: len(compressed) // 2])
    diff_id = sha256(LAYER)
    with pytest.raises(LayerError, match=f"layer {diff_id}: broken compressed data"):
        store.register_layer(store.blob_path(digest), diff_id, TAR_GZIP)
    assert not store.has_layer(diff_id) and store_is_clean(store)


def test_hostile_layer_leaves_nothing(store: Store) -> None:
    raw = make_tar([entry("ok", data=b"fine"), entry("../escape", data=b"x")])
    digest = add_blob(store, raw)
    with pytest.raises(LayerError) as caught:
        store.register_layer(store.blob_path(digest), sha256(raw), TAR)
    assert str(caught.value) == (f"layer {sha256(raw)}: entry '../escape': "
                                 "path leaves the layer")
    assert store_is_clean(store) and not (store.root / "escape").exists()


def test_unknown_media_type_is_refused(store: Store) -> None:
    digest = add_blob(store, LAYER)
    with pytest.raises(LayerError, match="unsupported layer media type"):
        store.register_layer(store.blob_path(digest), sha256(LAYER),
                             "application/vnd.oci.image.layer.v1.tar+lz4")
    assert store_is_clean(store)


def test_concurrent_registrations_unpack_once(store: Store) -> None:
    digest = add_blob(store, gzip.compress(LAYER))
    diff_id = sha256(LAYER)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(
        store.register_layer(store.blob_path(digest), diff_id, TAR_GZIP)))
        for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [404] * 4
    assert os.listdir(store.root / "layers/sha256") == [diff_id[7:]]
    assert os.listdir(store.root / "tmp") == []


# --- images ----------------------------------------------------------------------------

def image_record(store: Store, ref: str, layers: list[bytes]) -> dict:
    diff_ids = []
    for raw in layers:
        store.register_layer(store.blob_path(add_blob(store, raw)), sha256(raw), TAR)
        diff_ids.append(sha256(raw))
    config = {"architecture": "amd64", "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]}}
    config_raw = repr(config).encode()
    return {"id": sha256(config_raw), "ref": ref, "config": config,
            "manifest_digest": sha256(b"manifest " + config_raw), "diff_ids": diff_ids,
            "size": sum(map(len, layers))}


def test_images_by_ref_id_and_prefix(store: Store) -> None:
    base = make_tar([entry("base", data=b"base")])
    record = image_record(store, "lecture/hello:1", [base])
    store.put_image("lecture/hello:1", record)
    image_id = record["id"]

    by_ref = store.get_image("lecture/hello:1")
    assert by_ref["id"] == image_id and by_ref["config"] == record["config"]
    assert by_ref["repo_tags"] == ["lecture/hello:1"]
    assert store.get_image(image_id)["id"] == image_id
    assert store.get_image(image_id[7:19])["id"] == image_id           # 12 hex digits
    assert store.get_image("sha256:" + image_id[7:20])["id"] == image_id
    assert store.get_image(image_id[7:18]) is None                     # 11: too short
    assert store.get_image("lecture/hello:2") is None
    assert store.get_image("lecture/hello") is None                    # means :latest

    store.put_image("lecture/hello", record)                           # a second tag
    assert store.get_image("lecture/hello:latest")["ref"] == "lecture/hello:latest"
    assert [i["repo_tags"] for i in store.list_images()] == \
        [["lecture/hello:1", "lecture/hello:latest"]]


def test_remove_image_untags_then_deletes_unshared_layers(store: Store) -> None:
    base = make_tar([entry("base", data=b"base")])
    top_a = make_tar([entry("a", data=b"a")])
    top_b = make_tar([entry("b", data=b"b")])
    image_a = image_record(store, "a:1", [base, top_a])
    image_b = image_record(store, "b:1", [base, top_b])
    store.put_image("a:1", image_a)
    store.put_image("a:2", image_a)
    store.put_image("b:1", image_b)

    first = store.remove_image("a:1")
    assert (first["untagged"], first["deleted"], first["removed_layers"]) == \
        (["a:1"], False, [])
    assert store.get_image("a:2")["id"] == image_a["id"]

    second = store.remove_image("a:2")
    assert (second["untagged"], second["deleted"]) == (["a:2"], True)
    assert second["removed_layers"] == [sha256(top_a)]  # base is still used by b:1
    assert store.get_image(image_a["id"]) is None
    assert not store.has_layer(sha256(top_a)) and store.has_layer(sha256(base))
    assert [i["id"] for i in store.list_images()] == [image_b["id"]]
    with pytest.raises(KeyError):
        store.remove_image("a:1")


def test_layers_under_a_mounted_rootfs_are_kept(store: Store) -> None:
    layer = make_tar([entry("bin/", "dir"), entry("bin/x", data=b"x")])
    record = image_record(store, "busy:1", [layer])
    store.put_image("busy:1", record)
    cdir = store.container_dir("c0")
    runtime.mount_rootfs([store.layer_dir(d) for d in record["diff_ids"]], cdir)
    try:
        with pytest.raises(OSError, match="still has mounts"):
            store.remove_container_dir("c0")
        removed = store.remove_image("busy:1")
        assert removed["deleted"] and removed["removed_layers"] == []
        assert (cdir / "rootfs/bin/x").read_bytes() == b"x"
    finally:
        runtime.unmount_rootfs(cdir)
        store.remove_container_dir("c0")
    assert linux.mounts_under(store.root) == [] and not cdir.exists()
    assert store.remove_layer(sha256(layer)) and not store.has_layer(sha256(layer))


def test_concurrent_put_image_keeps_every_ref(store: Store) -> None:
    record = image_record(store, "x:0", [make_tar([entry("f", data=b"f")])])
    threads = [threading.Thread(target=store.put_image, args=(f"x:{n}", record))
               for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get_image(record["id"])["repo_tags"] == sorted(f"x:{n}" for n in range(16))


def test_normalize_ref() -> None:
    assert normalize_ref("busybox") == "busybox:latest"
    assert normalize_ref("localhost:5000/lecture/hello") == "localhost:5000/lecture/hello:latest"
    assert normalize_ref("localhost:5000/hello:1") == "localhost:5000/hello:1"
    assert normalize_ref("hello@sha256:" + "a" * 64) == "hello@sha256:" + "a" * 64


# --- containers ------------------------------------------------------------------------

def test_container_dirs(store: Store) -> None:
    cdir = store.container_dir("0123abcd")
    assert cdir == store.root / "containers/0123abcd" and cdir.is_dir()
    (cdir / "config.json").write_text("{}")
    store.remove_container_dir("0123abcd")
    assert not cdir.exists()
    store.remove_container_dir("0123abcd")  # idempotent
    for bad in ("../x", "a/b", ".", ""):
        with pytest.raises(ValueError):
            store.container_dir(bad)
