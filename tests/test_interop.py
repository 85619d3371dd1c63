"""Interop with the real peers (Debian's packages, no mocks):

- docksim's daemon pulls from the CNCF registry (`docker-registry`), after
  skopeo pushed images there from docksim's registry, as OCI and as Docker v2s2;
- skopeo pushes to docksim's registry (OCI, v2s2, zstd layers) and pulls from it
  (into an OCI layout and a dir);
- a real dockerd pulls from docksim's registry, with and without token auth,
  and through a Docker manifest list and an OCI index, and runs the image;
- an image built with umoci runs on docksim's daemon with the same output as
  its bundle under runc.
Needs root; each test is skipped when its peer is not installed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from contextlib import ExitStack
from pathlib import Path

import pytest

from registry.processes import cncf_registry
from registry.server import RegistryServer
from tests.conftest import ALPHA

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the engine and the peers need root")


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def address(server: RegistryServer) -> str:
    return server.url.removeprefix("http://")


@pytest.fixture
def skopeo(tmp_path):
    """`skopeo(*args)`: skopeo with an accept-anything policy and plain HTTP."""
    need("skopeo")
    policy = tmp_path / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')

    def run(*args: str) -> str:
        done = subprocess.run(["skopeo", "--policy", str(policy), *args], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout
    return run


def copy(skopeo, source: str, dest: str, *options: str) -> None:
    flags = []
    if source.startswith("docker://"):
        flags.append("--src-tls-verify=false")
    if dest.startswith("docker://"):
        flags.append("--dest-tls-verify=false")
    skopeo("copy", *flags, *options, source, dest)


def manifest_of(skopeo, reference: str) -> dict:
    return json.loads(skopeo("inspect", "--raw", "--tls-verify=false", reference))


# -- docksim's daemon <- CNCF registry ------------------------------------------------------

def test_our_daemon_pulls_from_the_cncf_registry(registry, built, start_daemon, skopeo, tmp_path):
    need("docker-registry")
    expected = [built.report.layers[n].diff_id for n in built.report.images[ALPHA].layers]
    with cncf_registry(tmp_path / "cncf") as cncf:
        for fmt in ("oci", "v2s2"):
            copy(skopeo, f"docker://{address(registry)}/{ALPHA}", f"docker://{cncf}/interop/alpha-{fmt}:1",
                 "--format", fmt)
        assert manifest_of(skopeo, f"docker://{cncf}/interop/alpha-v2s2:1")["mediaType"] == \
            "application/vnd.docker.distribution.manifest.v2+json"
        client = start_daemon(registry.url).client()
        for fmt in ("oci", "v2s2"):
            ref = f"{cncf}/interop/alpha-{fmt}:1"
            image = client.images.pull(ref)
            assert image.attrs["RootFS"]["Layers"] == expected
            assert client.containers.run(ref, ["echo", f"pulled {fmt}"], remove=True) == f"pulled {fmt}\n".encode()
        client.close()


# -- skopeo <-> docksim's registry ------------------------------------------------------------

def test_skopeo_pushes_to_and_pulls_from_our_registry(registry, built, skopeo, tmp_path):
    source = f"docker://{address(registry)}/{ALPHA}"
    with RegistryServer(tmp_path / "pushed") as ours:
        for fmt, media_type in (("oci", "application/vnd.oci.image.manifest.v1+json"),
                                ("v2s2", "application/vnd.docker.distribution.manifest.v2+json")):
            copy(skopeo, source, f"docker://{address(ours)}/interop/{fmt}:1", "--format", fmt)
            manifest = manifest_of(skopeo, f"docker://{address(ours)}/interop/{fmt}:1")
            assert manifest["mediaType"] == media_type
            assert [layer["digest"] for layer in manifest["layers"]] == \
                [built.report.layers[n].digest for n in built.report.images[ALPHA].layers]
        tags = json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{address(ours)}/interop/oci"))
        assert tags["Tags"] == ["1"]
        copy(skopeo, f"docker://{address(ours)}/interop/v2s2:1", f"oci:{tmp_path / 'layout'}:alpha")
        copy(skopeo, f"docker://{address(ours)}/interop/oci:1", f"dir:{tmp_path / 'dir'}")
    blobs = tmp_path / "layout" / "blobs" / "sha256"
    for blob in blobs.iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    for name in built.report.images[ALPHA].layers:
        assert (tmp_path / "dir" / built.report.layers[name].digest[7:]).is_file()


def test_skopeo_pushes_zstd_layers_that_we_pull(registry, built, skopeo, start_daemon, tmp_path):
    """skopeo recompresses to zstd on the way into a fresh registry (one holding
    the gzip blobs would let it reuse them); docksim's daemon pulls and runs it."""
    with RegistryServer(tmp_path / "zstd") as ours:
        reference = f"{address(ours)}/interop/zstd:1"
        copy(skopeo, f"docker://{address(registry)}/{ALPHA}", f"docker://{reference}",
             "--format", "oci", "--dest-compress", "--dest-compress-format", "zstd")
        manifest = manifest_of(skopeo, f"docker://{reference}")
        assert {layer["mediaType"] for layer in manifest["layers"]} == \
            {"application/vnd.oci.image.layer.v1.tar+zstd"}
        client = start_daemon(registry.url).client()
        image = client.images.pull(reference)
        assert image.attrs["RootFS"]["Layers"] == \
            [built.report.layers[n].diff_id for n in built.report.images[ALPHA].layers]
        assert client.containers.run(reference, ["cat", "/etc/passwd"], remove=True).startswith(b"root:")
        client.close()


# -- a real dockerd <- docksim's registry ----------------------------------------------------

def docker(sock: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    cli = shutil.which("docker") or "/usr/local/bin/docker"
    return subprocess.run([cli, "-H", f"unix://{sock}", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def dockerd():
    """A real dockerd in a temp dir (harness.dockerd); yields its socket path."""
    need("dockerd", "docker")
    from harness.dockerd import DockerdUnavailable, run_dockerd
    with ExitStack() as stack:
        try:
            sock = stack.enter_context(run_dockerd())
        except DockerdUnavailable as exc:
            pytest.skip(str(exc))
        yield sock


def test_dockerd_pulls_from_our_registry_and_runs_the_image(built, dockerd):
    for auth in (None, "token"):
        with RegistryServer(built.root, auth=auth) as ours:
            ref = f"{address(ours)}/{ALPHA}"
            pulled = docker(dockerd, "pull", ref)
            assert pulled.returncode == 0, pulled.stderr
            inspected = json.loads(docker(dockerd, "image", "inspect", ref).stdout)[0]
            assert inspected["Id"] == built.report.images[ALPHA].config_digest
            ran = docker(dockerd, "run", "--rm", "--network", "none", ref, "echo", f"hello {auth}")
            assert (ran.returncode, ran.stdout) == (0, f"hello {auth}\n"), ran.stderr
            assert docker(dockerd, "rmi", ref).returncode == 0


def test_dockerd_pulls_a_manifest_list_from_our_registry(built, dockerd, tmp_path):
    """A Docker manifest list and an OCI index (registry.variants), read by dockerd."""
    from registry.layout import RegistryLayout
    from registry.variants import publish
    shutil.copytree(built.root, tmp_path / "root")
    layout = RegistryLayout(tmp_path / "root")
    repository, tag = ALPHA.split(":")
    for kind, manifest in (("docker", "docker"), ("oci", "oci")):
        publish(layout, (repository, tag), (f"interop/{kind}-index", "1"), manifest=manifest, index=kind)
    with RegistryServer(tmp_path / "root") as ours:
        for kind in ("docker", "oci"):
            ref = f"{address(ours)}/interop/{kind}-index:1"
            pulled = docker(dockerd, "pull", ref)
            assert pulled.returncode == 0, pulled.stderr
            ran = docker(dockerd, "run", "--rm", "--network", "none", ref, "echo", kind)
            assert (ran.returncode, ran.stdout) == (0, f"{kind}\n"), ran.stderr


# -- umoci: the same image under docksim and under runc -------------------------------------

SCRIPT = "echo from umoci; id -u; cat /data/greeting; ls -ln /data; cat /data/hard"


def umoci_image(layout: Path, work: Path) -> None:
    """An OCI layout with one image, `app`, built by umoci: busybox, then a layer
    with owned and dated files, a symlink and a hard link."""
    def umoci(*args: str) -> None:
        done = subprocess.run(["umoci", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    umoci("init", "--layout", str(layout))
    umoci("new", "--image", f"{layout}:app")
    bundle = work / "build"
    umoci("unpack", "--image", f"{layout}:app", str(bundle))
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir()
    shutil.copy2(shutil.which("busybox"), rootfs / "bin" / "busybox")
    for applet in ("sh", "echo", "cat", "ls", "id"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    umoci("repack", "--image", f"{layout}:app", str(bundle))
    shutil.rmtree(bundle)
    umoci("unpack", "--image", f"{layout}:app", str(bundle))
    data = bundle / "rootfs" / "data"
    data.mkdir()
    (data / "greeting").write_text("made with umoci\n")
    os.chown(data / "greeting", 1000, 1000)
    os.chmod(data / "greeting", 0o604)  # readable: runc drops CAP_DAC_OVERRIDE
    os.symlink("greeting", data / "link")
    os.link(data / "greeting", data / "hard")
    for path in (data / "greeting", data):
        os.utime(path, (1_600_000_000, 1_600_000_000), follow_symlinks=False)
    umoci("repack", "--image", f"{layout}:app", str(bundle))
    umoci("config", "--image", f"{layout}:app", "--config.env", "PATH=/bin",
          "--config.cmd", "/bin/sh", "--config.cmd", "-c", "--config.cmd", SCRIPT)
    shutil.rmtree(bundle)


def runc_output(layout: Path, work: Path) -> str:
    bundle = work / "bundle"
    done = subprocess.run(["umoci", "unpack", "--image", f"{layout}:app", str(bundle)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False  # no console socket: plain pipes
    (bundle / "config.json").write_text(json.dumps(config))
    state = work / "runc-state"
    ran = subprocess.run(["runc", "--root", str(state), "run", "--bundle", str(bundle), f"docksim-{os.getpid()}"],
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    return ran.stdout


def test_an_umoci_image_runs_the_same_on_our_daemon_and_under_runc(registry, start_daemon, skopeo, tmp_path):
    need("umoci", "runc", "busybox")
    layout = tmp_path / "layout"
    umoci_image(layout, tmp_path)
    expected = runc_output(layout, tmp_path)
    assert expected.startswith("from umoci\n0\nmade with umoci\n")
    assert "1000     1000" in expected and "link -> greeting" in expected
    with RegistryServer(tmp_path / "registry") as ours:
        ref = f"{address(ours)}/umoci/app:1"
        copy(skopeo, f"oci:{layout}:app", f"docker://{ref}")
        client = start_daemon(registry.url).client()
        client.images.pull(ref)
        assert client.containers.run(ref, remove=True).decode() == expected
        client.close()
