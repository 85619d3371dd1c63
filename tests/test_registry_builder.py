"""The image builder: layer sizes, compressibility, digests, userland, cache."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from registry.builder import BuildReport, build_images, go_arch
from registry.userland import find_userland, host_userland
from vocab.scenario import MB, parse_scenario

HELLO = Path(__file__).resolve().parent.parent / "scenarios" / "hello.toml"


def scenario(images: list[tuple[str, list[tuple[str, float, float]]]], seed: int = 1):
    """A scenario with the given images: (ref, [(layer, size_mb, compression), ...])."""
    parts = [f'[scenario]\nname = "t"\nseed = {seed}\n']
    for ref, layers in images:
        listed = ", ".join(f'{{ name = "{n}", size_mb = {s}, compression = {c} }}' for n, s, c in layers)
        parts.append(f'[[image]]\nref = "{ref}"\nlayers = [{listed}]\n')
    parts.append(f'[[step]]\ncommand = "pull"\nimage = "{images[0][0]}"\n')
    return parse_scenario("\n".join(parts))


def sha256_file(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def blob(root: Path, digest: str) -> Path:
    return root / "blobs" / "sha256" / digest.split(":", 1)[1]


@pytest.fixture(scope="module")
def hello(tmp_path_factory) -> tuple[Path, BuildReport]:
    root = tmp_path_factory.mktemp("hello-root")
    return root, build_images(parse_scenario(HELLO.read_text(), str(HELLO)), root)


@pytest.mark.parametrize("compression", [1.0, 2.5, 4.0])
def test_sizes_and_gzip_ratio_match_the_declaration(tmp_path, compression):
    # The bottom layer carries busybox (2 MB, which gzip shrinks only 1.8x), so
    # it must be large enough for the filler to reach 4.0 overall.
    report = build_images(scenario([("t/x:1", [("bottom", 10.0, compression),
                                              ("upper", 8.0, compression)])]), tmp_path)
    assert report.warnings == []
    for name, size_mb in (("bottom", 10.0), ("upper", 8.0)):
        layer = report.layers[name]
        assert abs(layer.content_bytes - size_mb * MB) <= 0.01 * size_mb * MB
        assert abs(layer.content_bytes / layer.compressed_bytes / compression - 1) <= 0.05
        path = blob(tmp_path, layer.digest)
        assert path.stat().st_size == layer.compressed_bytes
        with tarfile.open(path) as tar:
            assert sum(m.size for m in tar.getmembers() if m.isfile()) == layer.content_bytes


def test_blob_digest_and_diff_id_are_sha256_of_compressed_and_uncompressed(hello):
    root, report = hello
    for layer in report.layers.values():
        data = blob(root, layer.digest).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == layer.digest
        tar_bytes = gzip.decompress(data)
        assert len(tar_bytes) == layer.tar_bytes
        assert "sha256:" + hashlib.sha256(tar_bytes).hexdigest() == layer.diff_id


def test_manifest_config_and_tag(hello):
    root, report = hello
    image = report.images["lecture/hello:1"]
    tag = (root / "repositories" / "lecture" / "hello" / "tags" / "1").read_text().strip()
    assert tag == image.manifest_digest
    manifest_bytes = blob(root, image.manifest_digest).read_bytes()
    assert sha256_file(blob(root, image.manifest_digest)) == image.manifest_digest
    manifest = json.loads(manifest_bytes)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"] == {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": image.config_digest, "size": image.config_bytes}
    assert [(d["digest"], d["size"], d["mediaType"]) for d in manifest["layers"]] == [
        (report.layers[n].digest, report.layers[n].compressed_bytes,
         "application/vnd.oci.image.layer.v1.tar+gzip") for n in ("base", "app")]
    config = json.loads(blob(root, image.config_digest).read_bytes())
    assert config["architecture"] == go_arch() and config["os"] == "linux"
    assert config["config"]["Cmd"] == ["/bin/sh"]
    assert config["config"]["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert config["rootfs"] == {"type": "layers",
                                "diff_ids": [report.layers["base"].diff_id, report.layers["app"].diff_id]}
    assert image.compressed_bytes == sum(report.layers[n].compressed_bytes for n in ("base", "app"))


def test_go_arch_names():
    assert go_arch("x86_64") == "amd64" and go_arch("aarch64") == "arm64"


def test_digests_are_reproducible_across_builds_and_scenarios(tmp_path, hello):
    _, first = hello
    again = build_images(parse_scenario(HELLO.read_text()), tmp_path / "again")
    assert again.images == first.images
    assert {n: l.digest for n, l in again.layers.items()} == {n: l.digest for n, l in first.layers.items()}
    # The same layer (name, size, compression, bottom or not) in another
    # scenario, with another seed and other images around it, is the same blob.
    other = build_images(scenario([("x/y:2", [("base", 3.0, 2.5), ("extra", 1.0, 1.0)]),
                                   ("x/z:3", [("extra", 1.0, 1.0), ("app", 20.0, 1.0)])], seed=99),
                         tmp_path / "other")
    assert other.layers["base"].digest == first.layers["base"].digest
    assert other.layers["app"].diff_id == first.layers["app"].diff_id


def test_bottom_layer_carries_a_runnable_busybox(tmp_path, hello):
    root, report = hello
    base = blob(root, report.layers["base"].digest)
    listing = subprocess.run(["tar", "-tvzf", str(base)], capture_output=True, text=True, check=True).stdout
    names = {line.split()[5] for line in listing.splitlines()}
    for expected in ("bin/busybox", "bin/sh", "bin/true", "bin/sleep", "bin/echo", "bin/ls",
                     "etc/passwd", "etc/group", "proc/", "dev/", "sys/", "tmp/", "etc/"):
        assert expected in names
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    subprocess.run(["tar", "-xzf", str(base), "-C", str(rootfs)], check=True)
    busybox = rootfs / "bin" / "busybox"
    assert busybox.is_file() and os.access(busybox, os.X_OK)
    for applet in ("sh", "true", "sleep", "echo", "cat", "ls", "hostname", "id", "env", "ps"):
        link = rootfs / "bin" / applet
        assert link.is_symlink() and link.resolve() == busybox.resolve()
    assert subprocess.run([str(busybox), "true"]).returncode == 0
    echoed = subprocess.run([str(rootfs / "bin" / "echo"), "hello"], capture_output=True, text=True)
    assert echoed.stdout == "hello\n"
    assert (rootfs / "etc" / "passwd").read_text().startswith("root:x:0:0:")
    # Upper layers carry only their filler.
    with tarfile.open(blob(root, report.layers["app"].digest)) as tar:
        assert not any(name.startswith("bin") for name in tar.getnames())


def test_host_userland_fallback_runs_with_its_own_libraries(tmp_path):
    userland = host_userland()
    report = build_images(scenario([("t/host:1", [("hostbase", 6.0, 2.0)])]), tmp_path / "root",
                          userland=userland)
    assert report.layers["hostbase"].userland == "host"
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    with tarfile.open(blob(tmp_path / "root", report.layers["hostbase"].digest)) as tar:
        tar.extractall(rootfs, filter="tar")
    libraries = [rootfs / f.path for f in userland.files if not f.path.startswith("bin/")]
    loaders = [lib for lib in libraries if lib.name.startswith("ld-")]
    if not loaders:
        pytest.skip("the host's binaries are static: nothing to load")
    library_path = ":".join(sorted({str(lib.parent) for lib in libraries}))
    for tool in ("true", "sh"):
        run = subprocess.run([str(loaders[0]), "--library-path", library_path,
                              str(rootfs / "bin" / tool), *(["-c", "exit 0"] if tool == "sh" else [])])
        assert run.returncode == 0


def test_too_small_bottom_layer_is_built_at_the_userland_size_with_a_warning(tmp_path):
    report = build_images(scenario([("t/small:1", [("tiny", 0.5, 2.0)])]), tmp_path)
    userland_bytes = find_userland().content_bytes
    assert report.layers["tiny"].content_bytes == userland_bytes
    assert any(w.startswith("layer 'tiny' (0.5 MB) is smaller than the userland it must carry ("
                            f"{userland_bytes / MB:.1f} MB); it was built at") for w in report.warnings)


def test_cache_makes_the_second_build_fast_and_identical(tmp_path):
    spec = scenario([("t/c:1", [("cbase", 3.0, 2.0), ("cbig", 60.0, 1.0)])])
    started = time.perf_counter()
    first = build_images(spec, tmp_path / "r1", tmp_path / "cache")
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    second = build_images(spec, tmp_path / "r2", tmp_path / "cache")
    second_s = time.perf_counter() - started
    assert not any(layer.from_cache for layer in first.layers.values())
    assert all(layer.from_cache for layer in second.layers.values())
    assert second.images == first.images
    assert second_s < first_s / 3
    for layer in second.layers.values():
        assert sha256_file(blob(tmp_path / "r2", layer.digest)) == layer.digest


def test_a_100_mb_layer_builds_in_well_under_two_seconds(tmp_path):
    started = time.perf_counter()
    report = build_images(scenario([("t/big:1", [("big", 100.0, 1.0)])]), tmp_path)
    elapsed_s = time.perf_counter() - started
    assert report.layers["big"].content_bytes == 100 * MB
    assert elapsed_s < 2.0
