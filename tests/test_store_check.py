"""`check`: a real store filled by real pulls, damaged on disk, found out, repaired, re-pulled.

Each test pulls images from docksim's registry into a real daemon's store, stops
the daemon, damages the store the way a crash or a bad disk would (a flipped
byte in a blob, a layer whose extraction never finished, a file cut short, a
partial download in tmp), and runs `python -m launcher check` as a user would:
the damage is named, one line each, with exit status 1; `--repair` removes it
and what depends on it; the next pull fetches exactly what was removed and the
store is clean again.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ALPHA, BETA, GAMMA, REPO_ROOT, pull_stream, short_id, statuses_by_layer
from tests.test_crash import daemon_on  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon mounts and unshares: needs root")


def check(root: Path, *flags: str, via: str = "launcher") -> subprocess.CompletedProcess:
    argv = ([sys.executable, "-m", "launcher", "check"] if via == "launcher"
            else [sys.executable, "simulate.py", "check"])
    return subprocess.run(argv + ["--root", str(root), *flags], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def problem_lines(result: subprocess.CompletedProcess) -> list[str]:
    return result.stdout.splitlines()[:-1]  # the last line is the summary


def layer_home(root: Path, built, layer: str) -> Path:
    return root / "layers/sha256" / built.report.layers[layer].diff_id[7:]


def test_a_flipped_byte_in_a_blob_is_found_and_repair_makes_the_next_pull_refetch_it(
        registry, registry_log, daemon_on, built):
    d = daemon_on(registry.url)
    client = d.client()
    client.images.pull(BETA)
    d.stop()
    clean = check(d.root)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.splitlines() == ["checked 4 blobs, 2 layers, 1 images, 1 tags: 0 problems"]

    extra = built.report.layers["extra"]
    blob = d.root / "blobs/sha256" / extra.digest[7:]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))

    found = check(d.root)
    assert found.returncode == 1
    lines = problem_lines(found)
    assert lines[0].startswith(f"blob {extra.digest}: corrupt: its content has digest sha256:")
    assert lines[1] == f"layer {extra.diff_id}: its blob {extra.digest} is missing or corrupt"
    assert lines[2].startswith("image sha256:") and lines[2].endswith(
        f"its layer {extra.diff_id} is missing or corrupt")
    assert lines[3].startswith(f"tag {BETA}: names image sha256:")
    assert len(lines) == 4

    repaired = check(d.root, "--repair")
    assert repaired.returncode == 0, repaired.stdout
    assert all(line.endswith("(repaired)") for line in problem_lines(repaired))
    assert not blob.exists() and not layer_home(d.root, built, "extra").exists()
    assert layer_home(d.root, built, "base").is_dir()  # sound: kept
    assert check(d.root).returncode == 0

    d.start()
    client = d.client()
    registry_log.lines.clear()
    statuses = statuses_by_layer(pull_stream(client, BETA))
    assert statuses[short_id(built.report.layers["base"].digest)] == ["Already exists"]
    assert statuses[short_id(extra.digest)][-1] == "Pull complete"
    gets = registry_log.blob_gets()  # the config blob is always fetched: not a layer
    assert gets[short_id(extra.digest)] == 1
    assert short_id(built.report.layers["base"].digest) not in gets
    assert client.containers.run(BETA, ["sh", "-c", "echo ok"], remove=True) == b"ok\n"
    d.stop()
    assert check(d.root).returncode == 0
    print(f"\nflipped byte: found {len(lines)} problems, repaired, 1 blob re-fetched")


def test_half_extracted_layers_and_partial_downloads_are_found_and_repaired(
        registry, daemon_on, built):
    d = daemon_on(registry.url, "--durable")  # fsync'd writes give the same store
    client = d.client()
    for ref in (ALPHA, BETA, GAMMA):
        client.images.pull(ref)
    d.stop()

    # a layer whose extraction stopped before its commit (meta.json never written)
    (layer_home(d.root, built, "extra") / "meta.json").unlink()
    # a layer whose biggest file was cut short under its final name
    top = layer_home(d.root, built, "top") / "diff"
    victim = max((p for p in top.rglob("*") if p.is_file() and not p.is_symlink()),
                 key=lambda p: p.stat().st_size)
    os.truncate(victim, victim.stat().st_size // 2)
    # what an interrupted pull leaves in flight
    (d.root / "tmp/blob-partial").write_bytes(b"\x1f\x8b half a download")
    (d.root / "tmp/layer-half").mkdir()

    fast = check(d.root, "--fast")  # without unpacking: the cut file goes unseen
    found = check(d.root, via="simulate")
    assert found.returncode == 1 and fast.returncode == 1
    lines = problem_lines(found)
    extra, top_layer = built.report.layers["extra"], built.report.layers["top"]
    assert lines[0].startswith("tmp: 2 leftovers of an interrupted daemon")
    assert f"layer {extra.diff_id}: not committed: meta.json missing or unreadable " \
           "(half-extracted)" in lines
    rel = victim.relative_to(top).as_posix()
    assert f"layer {top_layer.diff_id}: content differs from its blob: {rel} changed" in lines
    assert not any(line.startswith(f"layer {top_layer.diff_id}") for line in problem_lines(fast))
    bad_images = [line for line in lines if line.startswith("image ")]
    assert len(bad_images) == 2  # beta and gamma; alpha shares only the sound base
    assert sorted(line.split(":")[0] for line in lines if line.startswith("tag ")) == \
        sorted(f"tag {ref.rsplit(':', 1)[0]}" for ref in (BETA, GAMMA))

    repaired = check(d.root, "--repair")
    assert repaired.returncode == 0, repaired.stdout
    assert os.listdir(d.root / "tmp") == []
    assert check(d.root).returncode == 0

    d.start()
    client = d.client()
    assert {t for i in client.images.list() for t in i.tags} == {ALPHA}
    for ref in (BETA, GAMMA):
        client.images.pull(ref)
    name = "/" + rel
    out = client.containers.run(GAMMA, ["sh", "-c", f"wc -c < {name}"], remove=True)
    assert int(out) == top_layer_size(built, rel)
    d.stop()
    final = check(d.root)
    assert final.returncode == 0, final.stdout
    print(f"\nhalf-extracted layer, cut file, tmp leftovers: {len(lines)} problems found, "
          "all repaired, re-pulled clean")


def top_layer_size(built, rel: str) -> int:
    """The size of a file of the "top" layer as the registry's blob has it."""
    import gzip
    import io
    import tarfile
    raw = (built.root / "blobs/sha256" / built.report.layers["top"].digest[7:]).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for member in tar.getmembers():
            if member.name.lstrip("./") == rel:
                return member.size
    raise AssertionError(f"{rel} not in the top layer")


def test_bad_input_and_a_live_daemon_give_one_line_and_status_2(registry, daemon_on, tmp_path):
    for via in ("launcher", "simulate"):
        result = check(tmp_path, via=via)
        assert result.returncode == 2
        assert result.stderr.strip() == f"docksim check: {tmp_path} is not a docksim store: no blobs/sha256/"
        assert result.stdout == ""
    d = daemon_on(registry.url)
    busy = check(d.root, "--repair")
    assert busy.returncode == 2
    assert busy.stderr.strip() == (f"docksim check: {d.root} is in use by a running daemon; "
                                   "stop it before --repair")
    assert check(d.root).returncode == 0  # reading a live store is fine
    second = subprocess.run([sys.executable, "-m", "launcher", "--socket", str(tmp_path / "2.sock"),
                             "--root", str(d.root), "--registry", registry.url],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert second.returncode == 2
    assert second.stderr.strip().endswith(f"docksim daemon: {d.root} is in use by another daemon")
