"""Hostile layers: every row of tests/hostile_layers_corpus.py registered into a real
store (gunzip/zstd, untar, whiteouts, the size cap), then a few of them pulled by the
real Docker SDK from docksim's registry through docksim's daemon.

For each row: the layer is refused with a one-line LayerError naming the layer and
the reason, or neutralised (registered, the hostile part inert); a sentinel
directory outside the layer directory is byte-for-byte, mode-for-mode and
mtime-for-mtime the same afterwards, and so are /etc/passwd and /etc/shadow; a
refused layer leaves the store exactly as it was (no layer directory, nothing in
its tmp/).  Needs root (layers are unpacked with their owners, whiteouts and xattrs).
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from launcher.manifest import host_arch
from launcher.store import Store
from launcher.unpack import LayerError
from registry.layout import RegistryLayout
from registry.server import RegistryServer
from tests.conftest import pull_stream, short_id
from tests.hostile_layers_corpus import CASES, MAX_LAYER_BYTES, Case, by_name
from tests.test_unpack import scratch_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="unpacking layers needs root")

SYSTEM_FILES = ("/etc/passwd", "/etc/shadow")
TABLE = by_name()


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Everything under root, not following symlinks: kind, mode, owner, size, mtime,
    link count, device number, xattrs, and the content's sha256 or the link's target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in
                       {os.path.join(root, s) for s in skip}]
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.path.relpath(path, root) in skip:
                continue
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            else:
                content = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
            out[os.path.relpath(path, root)] = (
                st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_nlink,
                st.st_rdev, sorted(os.listxattr(path, follow_symlinks=False)), content)
    return out


def listing(root: Path) -> list[str]:
    """Names under root with their kind (a store's shape; its dirs' mtimes move)."""
    return sorted(f"{p.relative_to(root)}:{stat.S_IFMT(os.lstat(p).st_mode):o}" for p in root.rglob("*"))


def system_state() -> dict[str, tuple]:
    return {f: (s.st_nlink, s.st_size, s.st_mtime_ns, s.st_mode)
            for f in SYSTEM_FILES if os.path.exists(f) for s in [os.lstat(f)]}


def make_canary(canary: Path) -> None:
    """The sentinel: a file, a subdirectory with a file, a symlink, set mtimes."""
    (canary / "sub").mkdir(parents=True)
    (canary / "file").write_text("canary\n")
    (canary / "sub" / "inner").write_bytes(b"inner\n")
    os.symlink("file", canary / "link")
    for path in (canary / "file", canary / "sub" / "inner", canary / "sub"):
        os.utime(path, ns=(1_500_000_000 * 10**9,) * 2)


@dataclass
class Outcome:
    error: str | None
    outside_same: bool
    system_same: bool
    store_same: bool     # refused: as before; neutralised: as before plus the one layer
    tmp_empty: bool
    check_error: str | None = None


def apply_case(case: Case) -> Outcome:
    """Register the row's blob in a fresh store beside a fresh canary."""
    with scratch_dir() as work:
        canary = work / "canary"
        make_canary(canary)
        store = Store(work / "store", max_layer_bytes=MAX_LAYER_BYTES)
        blob, media_type, diff_id = case.build(str(canary))
        (work / "blob").write_bytes(blob)
        outside, system, store_before = snapshot(work, skip=("store",)), system_state(), listing(store.root)
        try:
            store.register_layer(work / "blob", diff_id, media_type)
            error = None
        except LayerError as exc:
            error = str(exc)
        store_after = listing(store.root)
        if error is None:
            home = f"layers/sha256/{diff_id.split(':')[1]}"
            store_after = [line for line in store_after if not line.startswith(home)]
        outcome = Outcome(error, snapshot(work, skip=("store",)) == outside, system_state() == system,
                          store_after == store_before, not any((store.root / "tmp").iterdir()))
        if error is None and case.check is not None:
            try:
                case.check(store.layer_dir(diff_id), canary)
            except AssertionError as exc:
                outcome.check_error = f"{exc!r}"
        if error is not None:
            assert error.startswith(f"layer {diff_id}: "), error
        return outcome


RESULTS: dict[str, Outcome] = {}


@pytest.mark.parametrize("name", list(TABLE))
def test_hostile_layer_is_refused_or_neutralised(name: str) -> None:
    case = TABLE[name]
    outcome = RESULTS[name] = apply_case(case)
    if case.refused is not None:
        assert outcome.error is not None, "registered, but should have been refused"
        assert case.refused in outcome.error, outcome.error
        assert "\n" not in outcome.error and len(outcome.error) < 400, outcome.error
    else:
        assert outcome.error is None, outcome.error
        assert outcome.check_error is None, outcome.check_error
    assert outcome.outside_same, "something outside the layer directory changed"
    assert outcome.system_same, "a system file changed"
    assert outcome.store_same and outcome.tmp_empty, "the store changed beyond the one layer"


def test_corpus_figures() -> None:
    """The whole table at once (rows a -k filter skipped run here), as figures."""
    for case in CASES:
        if case.name not in RESULTS:
            RESULTS[case.name] = apply_case(case)
    refused = [c for c in CASES if c.refused is not None]
    neutral = [c for c in CASES if c.refused is None]
    refused_ok = sum(RESULTS[c.name].error is not None and c.refused in RESULTS[c.name].error
                     for c in refused)
    neutral_ok = sum(RESULTS[c.name].error is None and RESULTS[c.name].check_error is None
                     for c in neutral)
    contained = sum(o.outside_same and o.system_same for o in RESULTS.values())
    clean = sum(o.store_same and o.tmp_empty for o in RESULTS.values())
    print(f"\nhostile layers refused {refused_ok}/{len(refused)}, neutralised "
          f"{neutral_ok}/{len(neutral)}; outside untouched {contained}/{len(CASES)}; "
          f"store unchanged {clean}/{len(CASES)}")
    assert (refused_ok, neutral_ok) == (len(refused), len(neutral))
    assert contained == clean == len(CASES)
    assert len(refused) >= 50 and len(neutral) >= 12


# -- through the daemon: the Docker SDK pulls hostile images from docksim's registry ------

E2E = {  # repository -> corpus row
    "hostile/dotdot": "dotdot",
    "hostile/symlink": "write through absolute symlink",
    "hostile/bomb": "gzip bomb",
    "hostile/truncated": "truncated gzip",
    "hostile/device": "character device",
    "hostile/pax": "many pax headers adding up",
}


def publish(layout: RegistryLayout, repository: str, blob: bytes, media_type: str, diff_id: str) -> None:
    """An image of one layer, tagged 1, as a registry would hold it after a push."""
    config = json.dumps({"architecture": host_arch(), "os": "linux",
                         "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": layout.put_blob(config), "size": len(config)},
        "layers": [{"mediaType": media_type, "digest": layout.put_blob(blob), "size": len(blob)}],
    }).encode()
    layout.ensure_repository(repository)
    layout.set_tag(repository, "1", layout.put_blob(manifest))


def test_hostile_pulls_through_the_daemon(start_daemon, tmp_path) -> None:
    """`docker pull` of each hostile image fails with one error naming the layer and
    the reason; no image, no layer directory, no layer blob, nothing in tmp/, and the
    canary is untouched.  Then a good image still pulls (the daemon was not hurt)."""
    canary = Path(tempfile.mkdtemp(prefix="docksim-canary-", dir=tmp_path))
    make_canary(canary)
    layout = RegistryLayout(tmp_path / "registry")
    layers = {}
    for repository, row in E2E.items():
        blob, media_type, diff_id = TABLE[row].build(str(canary))
        publish(layout, repository, blob, media_type, diff_id)
        layers[repository] = ("sha256:" + hashlib.sha256(blob).hexdigest(), diff_id)
    good = TABLE["tar without end blocks"].build(str(canary))
    publish(layout, "hostile/good", *good)
    before, system = snapshot(canary), system_state()

    clean = 0
    with RegistryServer(layout.root) as registry:
        daemon = start_daemon(registry.url, extra_args=("--max-layer-mb", str(MAX_LAYER_BYTES / 1e6)))
        client = daemon.client()
        try:
            for repository, row in E2E.items():
                messages = pull_stream(client, f"{repository}:1")
                errors = [m for m in messages if "error" in m]
                assert errors == messages[-1:], messages
                digest, diff_id = layers[repository]
                assert short_id(digest) in errors[0]["error"], errors
                assert TABLE[row].refused in errors[0]["error"], errors
                assert client.images.list() == []
                assert list((daemon.root / "layers" / "sha256").iterdir()) == []
                assert not (daemon.root / "blobs" / "sha256" / digest.split(":")[1]).exists()
                assert list((daemon.root / "tmp").iterdir()) == []
                assert snapshot(canary) == before and system_state() == system, repository
                clean += 1
            messages = pull_stream(client, "hostile/good:1")
            assert messages[-1] == {"status": "Status: Downloaded newer image for hostile/good:1"}
            assert [p.name for p in (daemon.root / "layers" / "sha256").iterdir()] == \
                [good[2].split(":")[1]]
            assert (daemon.root / "layers" / "sha256" / good[2].split(":")[1] / "diff" / "f").read_bytes() \
                == b"kept"
        finally:
            client.close()
    print(f"\ndaemon: hostile pulls refused cleanly {clean}/{len(E2E)}, then a good pull succeeded")
