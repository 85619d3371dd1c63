"""The pull pipeline on every image format, through real HTTP, in this process:
`PullManager` with a `Store` against docksim's registry (`RegistryServer`).

Formats (registry.variants re-publishes one built image): OCI and Docker
schema-2 manifests; OCI index and Docker manifest list (the platform is picked
by `uname -m`); gzip, zstd and plain layers, and gzip members / zstd frames cut
in two.  Then token auth, the two extraction orders (serial, parallel) giving
the same rootfs, and the unpacker following the download.  The fixtures and
helpers here are shared with test_pull_faults (resume, retries, bad blobs).
Needs root (layers are unpacked with their owners and whiteouts).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from launcher import linux
from launcher.download import RetryPolicy
from launcher.manifest import host_arch
from launcher.phases import PhaseLog
from launcher.puller import PullManager
from launcher.registry_client import PullError
from launcher.store import Store
from registry.builder import build_images
from registry.layout import RegistryLayout
from registry.server import RegistryServer
from registry.variants import publish
from tests.test_unpack import entry, make_tar
from vocab.scenario import parse_scenario

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="unpacking layers needs root")

IMAGE_TOML = """
[scenario]
name = "formats"

[[image]]
ref = "fmt/source:1"
layers = [
  { name = "fmt-base", size_mb = 2.0, compression = 2.5 },
  { name = "fmt-app", size_mb = 1.5, compression = 1.0 },
]

[[step]]
command = "pull"
image = "fmt/source:1"
"""
VARIANTS = {  # repository -> publish() options
    "fmt/oci-gzip": dict(manifest="oci", compression="gzip"),
    "fmt/docker-gzip": dict(manifest="docker", compression="gzip"),
    "fmt/oci-zstd": dict(manifest="oci", compression="zstd"),
    "fmt/docker-zstd": dict(manifest="docker", compression="zstd"),
    "fmt/oci-plain": dict(manifest="oci", compression="none"),
    "fmt/docker-plain": dict(manifest="docker", compression="none"),
    "fmt/gzip-members": dict(manifest="oci", compression="gzip-multi"),
    "fmt/zstd-frames": dict(manifest="oci", compression="zstd-multi"),
    "fmt/oci-index": dict(manifest="oci", compression="gzip", index="oci"),
    "fmt/docker-list": dict(manifest="docker", compression="gzip", index="docker"),
    "fmt/index-zstd": dict(manifest="oci", compression="zstd", index="oci"),
}
FAST_RETRY = RetryPolicy(attempts=5, unit_s=0.01)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A registry root holding the source image, its variants and a layered image."""
    root = tmp_path_factory.mktemp("formats") / "registry"
    build_images(parse_scenario(IMAGE_TOML, "IMAGE_TOML"), root,
                 cache_dir=tmp_path_factory.mktemp("cache"))
    layout = RegistryLayout(root)
    for repository, options in VARIANTS.items():
        publish(layout, ("fmt/source", "1"), (repository, "1"), **options)
    publish_layered(layout)
    return root


@pytest.fixture(scope="module")
def server(root):
    with RegistryServer(root) as running:
        yield running


@pytest.fixture
def stores():
    """A factory of empty stores in one temp dir, removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix="docksim-formats-"))
    made = []

    def make() -> Store:
        made.append(Store(work / f"store-{len(made)}"))
        return made[-1]
    try:
        yield make
    finally:
        for mount_point in reversed(linux.mounts_under(work)):
            linux.umount2(mount_point, linux.MNT_DETACH)
        shutil.rmtree(work, ignore_errors=True)


def pull(url: str, ref: str, store: Store, **options):
    """One pull: (record, progress messages, phase events by phase)."""
    phases = PhaseLog()
    manager = PullManager(store, phases, url, **{"retry": FAST_RETRY, **options})
    messages: list[dict] = []
    record = manager.pull(ref, "t", messages.append)
    by_phase: dict[str, list[dict]] = {}
    for event in sorted(phases.take("t"), key=lambda e: e["start"]):
        by_phase.setdefault(event["phase"], []).append(event)
    return record, messages, by_phase


def tree(path: Path) -> dict[str, tuple]:
    """Everything below `path`: type, mode, owner, size, mtime, rdev, opaque xattr, content digest."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            try:
                opaque = os.getxattr(full, "trusted.overlay.opaque", follow_symlinks=False)
            except OSError:
                opaque = None
            content = hashlib.sha256(Path(full).read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else \
                (os.readlink(full) if stat.S_ISLNK(st.st_mode) else None)
            out[os.path.relpath(full, path)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                                st.st_mtime_ns, st.st_rdev, opaque, content)
    return out


def layer_trees(store: Store, record: dict) -> list[dict]:
    return [tree(store.layer_dir(d)) for d in record["diff_ids"]]


def store_is_empty(store: Store) -> bool:
    return (not os.listdir(store.root / "tmp") and not os.listdir(store.root / "layers/sha256")
            and store.list_images() == [])


# -- every format gives the same image -------------------------------------------

@pytest.mark.parametrize("repository", sorted(VARIANTS))
def test_every_format_pulls_to_the_same_layers(server, root, stores, repository):
    reference_store, store = stores(), stores()
    reference, _, _ = pull(server.url, "fmt/source:1", reference_store)
    record, messages, phases = pull(server.url, f"{repository}:1", store)
    assert messages[-1] == {"status": f"Status: Downloaded newer image for {repository}:1"}
    assert record["diff_ids"] == reference["diff_ids"]
    assert layer_trees(store, record) == layer_trees(reference_store, reference)
    assert record["config"]["architecture"] == host_arch()
    assert len(phases["download"]) == len(phases["extract"]) == 2
    tagged = RegistryLayout(root).resolve_tag(repository, "1")
    if "index" not in VARIANTS[repository]:
        assert record["manifest_digest"] == tagged
    for layer in json.loads(RegistryLayout(root).blob_path(record["manifest_digest"]).read_bytes())["layers"]:
        assert store.has_blob(layer["digest"])  # the verified blob is kept, as containerd does


def test_an_index_gives_this_machines_manifest(server, root):
    """The index lists this machine's platform last, among others: the pull takes
    the entry for linux/<uname -m>, never the first one."""
    layout = RegistryLayout(root)
    index = json.loads(layout.blob_path(layout.resolve_tag("fmt/oci-index", "1")).read_bytes())
    ours = [e for e in index["manifests"] if e["platform"]["architecture"] == host_arch()]
    assert len(ours) == 1 and index["manifests"][0] is not ours[0]
    work = Path(tempfile.mkdtemp())
    try:
        record, _, _ = pull(server.url, "fmt/oci-index:1", Store(work / "s"))
    finally:
        shutil.rmtree(work)
    assert record["manifest_digest"] == ours[0]["digest"]


def test_an_index_without_this_platform_is_refused(server, root, stores):
    layout = RegistryLayout(root)
    index = json.loads(layout.blob_path(layout.resolve_tag("fmt/oci-index", "1")).read_bytes())
    index["manifests"] = [e for e in index["manifests"] if e["platform"]["architecture"] != host_arch()]
    layout.set_tag("fmt/foreign", "1", layout.put_blob(json.dumps(index).encode()))
    layout.ensure_repository("fmt/foreign")
    store = stores()
    with pytest.raises(PullError, match=f"no matching manifest for linux/{host_arch()}"):
        pull(server.url, "fmt/foreign:1", store)
    assert store_is_empty(store)


def test_schema1_is_refused_with_a_clear_message(server, root, stores):
    layout = RegistryLayout(root)
    old = {"schemaVersion": 1, "name": "fmt/old", "tag": "1", "fsLayers": [], "history": []}
    layout.ensure_repository("fmt/old")
    layout.set_tag("fmt/old", "1", layout.put_blob(json.dumps(old).encode()))
    with pytest.raises(PullError, match="schema 1 manifests are not supported"):
        pull(server.url, "fmt/old:1", stores())


# -- token auth --------------------------------------------------------------------

def test_token_auth(root, stores, registry_log):
    """401 + Bearer challenge on /v2/, a token from the realm, every later request
    with it (the layer downloads too, on their own connections)."""
    with RegistryServer(root, auth="token") as server:
        record, messages, _ = pull(server.url, "fmt/docker-gzip:1", stores())
    assert messages[-1]["status"].startswith("Status: Downloaded newer image")
    # (log lines follow the bytes sent, so requests on parallel connections may
    # log out of order: count them instead)
    lines = [tuple(line.split(" ")[:3]) for line in registry_log.lines  # method, path, status
             if line.startswith(("GET ", "HEAD "))]
    assert [line for line in lines if line[2] == "401"] == [("GET", "/v2/", "401")]
    assert [line for line in lines if line[1] == "/token"] == [("GET", "/token", "200")]
    blob_gets = [line for line in lines if "/blobs/" in line[1]]
    assert len(blob_gets) == 3 and {line[2] for line in blob_gets} == {"200"}  # config + 2 layers
    assert len(lines) == 6  # /v2/, /token, the manifest, the config, 2 layers


# -- streaming and the extraction order ------------------------------------------------

def publish_layered(layout: RegistryLayout) -> None:
    """fmt/layered:1, three layers with deletions: a whiteout, an opaque directory,
    a file replaced, a hardlink, a symlink, modes and owners."""
    base = make_tar([entry("etc/", "dir"), entry("etc/motd", data=b"old\n"),
                     entry("etc/keep", data=b"keep\n", mode=0o600, uid=7, gid=8),
                     entry("opt/", "dir"), entry("opt/a", data=b"a"), entry("opt/b", data=b"b"),
                     entry("bin/", "dir"), entry("bin/tool", data=b"x" * 70_000, mode=0o4755)])
    middle = make_tar([entry("etc/", "dir"), entry("etc/.wh.motd"), entry("opt/", "dir"),
                       entry("opt/.wh..wh..opq"), entry("opt/c", data=b"c"),
                       entry("bin/", "dir"), entry("bin/link", "symlink", link="tool")])
    top = make_tar([entry("etc/", "dir"), entry("etc/motd", data=b"new\n"),
                    entry("bin/", "dir"), entry("bin/tool", data=b"y" * 50_000, mode=0o755),
                    entry("bin/hard", "hardlink", link="bin/tool")])
    layers, diff_ids = [], []
    for tar in (base, middle, top):
        blob = gzip.compress(tar, mtime=0)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": layout.put_blob(blob), "size": len(blob)})
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
    config = json.dumps({"architecture": host_arch(), "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "config": {"Cmd": ["/bin/tool"]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": layout.put_blob(config), "size": len(config)},
                           "layers": layers}).encode()
    layout.ensure_repository("fmt/layered")
    layout.set_tag("fmt/layered", "1", layout.put_blob(manifest))


def merged(store: Store, record: dict, target: Path) -> dict:
    """The image's rootfs as overlayfs shows it (read-only, lowers only)."""
    target.mkdir()
    lowers = ":".join(str(store.layer_dir(d)) for d in reversed(record["diff_ids"]))
    linux.mount("overlay", target, "overlay", linux.MS_RDONLY, f"lowerdir={lowers}")
    try:
        return tree(target)
    finally:
        linux.umount2(target)


def test_parallel_extraction_gives_the_serial_rootfs(server, stores, tmp_path):
    serial_store, parallel_store = stores(), stores()
    serial, _, _ = pull(server.url, "fmt/layered:1", serial_store, extract="serial")
    parallel, _, _ = pull(server.url, "fmt/layered:1", parallel_store, extract="parallel")
    assert layer_trees(serial_store, serial) == layer_trees(parallel_store, parallel)
    view = merged(serial_store, serial, tmp_path / "serial")
    assert view == merged(parallel_store, parallel, tmp_path / "parallel")
    assert "etc/motd" in view and "opt/a" not in view and "opt/c" in view
    assert view["bin/hard"][7] == view["bin/tool"][7]


def test_unpacking_follows_the_download(root, stores):
    """On a slow link the unpacker works while the bytes arrive: the bottom
    layer's extract (and in parallel order every layer's) begins before its
    download ends; in serial order the upper layer waits for the lower one to
    be registered, in parallel order it does not."""
    with RegistryServer(root, bandwidth_mbps=40) as slow:
        _, messages, serial = pull(slow.url, "fmt/oci-plain:1", stores(), extract="serial")
        _, _, parallel = pull(slow.url, "fmt/oci-plain:1", stores(), extract="parallel")
    for by_phase, streamed in ((serial, serial["extract"][:1]), (parallel, parallel["extract"])):
        downloads = {d["layer"]: d for d in by_phase["download"]}
        for extract in by_phase["extract"]:
            download = downloads[extract["layer"]]
            assert download["start"] < extract["start"] and download["end"] <= extract["end"]
        for extract in streamed:
            assert extract["start"] < downloads[extract["layer"]]["end"]
    bottom, upper = serial["extract"]
    assert upper["start"] >= bottom["end"]
    starts = sorted(e["start"] for e in parallel["extract"])
    assert starts[1] < min(e["end"] for e in parallel["extract"])
    # and the client still hears Docker's order for each layer
    for layer in {m["id"] for m in messages if len(m.get("id", "")) == 12}:
        statuses = [m["status"] for m in messages if m.get("id") == layer]
        assert statuses.index("Download complete") < statuses.index("Extracting") < \
            statuses.index("Pull complete")
