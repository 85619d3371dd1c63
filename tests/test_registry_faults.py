"""The registry's faults over real HTTP on 127.0.0.1, seen with raw `http.client`:
503, 429 with Retry-After, a stall mid-body, a cut body, a flipped byte, a slow
drip; never on image configs or manifests; seeded and capped; and the
`--faults` flag of `python -m registry serve`."""
from __future__ import annotations

import hashlib
import http.client
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from registry.faults import Faults, Injection, body_steps
from registry.layout import RegistryLayout
from registry.server import RegistryServer
from vocab.faults import RATE_KEYS, RegistryFaults

REPO_ROOT = Path(__file__).resolve().parent.parent
BLOB_BYTES = 300_000


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """One repository with a random 'layer' blob, a JSON config blob and a manifest."""
    root = tmp_path_factory.mktemp("faults") / "registry"
    layout = RegistryLayout(root)
    layout.ensure_repository("t/x")
    layer = random.Random(3).randbytes(BLOB_BYTES)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": layout.put_blob(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": layout.put_blob(layer), "size": len(layer)}]}).encode()
    layout.set_tag("t/x", "1", layout.put_blob(manifest))
    return root


def blobs(root: Path) -> tuple[str, bytes, str]:
    """(layer digest, layer bytes, config digest)."""
    layout = RegistryLayout(root)
    manifest = json.loads(layout.blob_path(layout.resolve_tag("t/x", "1")).read_bytes())
    digest = manifest["layers"][0]["digest"]
    return digest, layout.blob_path(digest).read_bytes(), manifest["config"]["digest"]


def connect(server: RegistryServer, timeout_s: float = 10) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(server.host, server.port, timeout=timeout_s)


def fetch(server: RegistryServer, path: str, headers: dict | None = None, method: str = "GET"):
    """(status, headers, body) of one request on a fresh connection."""
    conn = connect(server)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def faulty(root: Path, seed: int = 0, **rates) -> RegistryServer:
    return RegistryServer(root, faults=Faults(spec=RegistryFaults(**rates), seed=seed))


def once(kind: str, **extra) -> dict:
    return {RATE_KEYS[kind]: 1.0, "max_faults": 1, **extra}


# -- refusals ----------------------------------------------------------------------------

def test_503_answers_unavailable_and_only_blob_gets(root):
    digest, data, config = blobs(root)
    with faulty(root, error_503_rate=1.0) as server:
        status, headers, body = fetch(server, f"/v2/t/x/blobs/{digest}")
        assert status == 503 and headers["Docker-Distribution-API-Version"] == "registry/2.0"
        assert json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
        # the same blob by HEAD, the config blob and the manifest: never faulted
        assert fetch(server, f"/v2/t/x/blobs/{digest}", method="HEAD")[0] == 200
        status, _, body = fetch(server, f"/v2/t/x/blobs/{config}")
        assert status == 200 and body.startswith(b"{")
        assert fetch(server, "/v2/t/x/manifests/1")[0] == 200
        assert server.faults.counts["503"] == 1


@pytest.mark.parametrize("retry_after_s, header", [(2.0, "2"), (0.5, "0.5")])
def test_429_carries_retry_after(root, retry_after_s, header):
    digest, _, _ = blobs(root)
    with faulty(root, rate_limit_429_rate=1.0, retry_after_s=retry_after_s) as server:
        status, headers, body = fetch(server, f"/v2/t/x/blobs/{digest}")
    assert status == 429 and headers["Retry-After"] == header
    assert json.loads(body)["errors"][0]["code"] == "TOOMANYREQUESTS"


# -- body faults ----------------------------------------------------------------------------

def test_a_stall_is_silent_for_stall_s_then_sends_the_rest(root):
    digest, data, _ = blobs(root)
    with faulty(root, **once("stall", stall_s=0.4)) as server:
        conn = connect(server)
        conn.request("GET", f"/v2/t/x/blobs/{digest}")
        resp = conn.getresponse()
        received, gaps, last = b"", [], time.monotonic()
        while chunk := resp.read1(65536):
            now = time.monotonic()
            gaps.append((now - last, len(received)))
            received, last = received + chunk, now
        conn.close()
    assert received == data  # nothing lost, nothing changed
    longest_s, at_byte = max(gaps)
    print(f"stall: {longest_s:.3f} s of silence after {at_byte} of {len(data)} bytes")
    assert 0.38 <= longest_s < 0.4 + 0.3
    assert sorted(g for g, _ in gaps)[-2] < 0.2     # one stall only


def test_a_client_whose_read_times_out_during_a_stall_finds_the_server_serving_on(root):
    digest, data, _ = blobs(root)
    with faulty(root, **once("stall", stall_s=1.0)) as server:
        conn = connect(server, timeout_s=0.25)
        conn.request("GET", f"/v2/t/x/blobs/{digest}")
        resp = conn.getresponse()
        with pytest.raises(TimeoutError):
            while resp.read1(65536):
                pass
        conn.close()
        # the next GET is not faulted (max_faults = 1) and whole
        status, _, body = fetch(server, f"/v2/t/x/blobs/{digest}")
    assert status == 200 and body == data


def test_a_cut_closes_the_connection_and_a_range_request_gets_the_rest(root):
    digest, data, _ = blobs(root)
    with faulty(root, **once("cut")) as server:
        conn = connect(server)
        conn.request("GET", f"/v2/t/x/blobs/{digest}")
        resp = conn.getresponse()
        assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(data)
        with pytest.raises(http.client.IncompleteRead) as short:
            resp.read()
        conn.close()
        head = short.value.partial
        assert 0 <= len(head) < len(data) and data.startswith(head)
        status, headers, rest = fetch(server, f"/v2/t/x/blobs/{digest}",
                                      {"Range": f"bytes={len(head)}-"})
    assert status == 206 and head + rest == data
    print(f"cut after {len(head)} of {len(data)} bytes; resumed with Range")


def test_a_flipped_byte_keeps_the_length_and_breaks_the_digest(root):
    digest, data, _ = blobs(root)
    with faulty(root, **once("flip")) as server:
        status, _, body = fetch(server, f"/v2/t/x/blobs/{digest}")
        again = fetch(server, f"/v2/t/x/blobs/{digest}")[2]
    assert status == 200 and len(body) == len(data)
    differ = [i for i in range(len(data)) if body[i] != data[i]]
    assert len(differ) == 1 and body[differ[0]] == data[differ[0]] ^ 0xFF
    assert "sha256:" + hashlib.sha256(body).hexdigest() != digest
    assert again == data


def test_a_drip_holds_the_body_to_its_rate(root):
    digest, data, _ = blobs(root)
    # 800 kbit/s = 100 kB/s: 300 kB in 3 s would be slow for a test, so a Range of 60 kB
    with faulty(root, drip_rate=1.0, drip_kbps=800) as server:
        began = time.monotonic()
        status, _, body = fetch(server, f"/v2/t/x/blobs/{digest}", {"Range": "bytes=1000-60999"})
        took_s = time.monotonic() - began
    assert status == 206 and body == data[1000:61000]
    print(f"drip: 60000 bytes in {took_s:.3f} s (0.6 s at 800 kbit/s)")
    assert 0.6 <= took_s < 0.6 + 0.3


def test_body_steps_plan_each_fault():
    steps = list(body_steps(10, 4, None))
    assert steps == [("send", 0, 4), ("send", 4, 4), ("send", 8, 2)]
    assert list(body_steps(10, 4, Injection("cut", 6))) == [("send", 0, 4), ("send", 4, 2), ("cut",)]
    assert list(body_steps(10, 4, Injection("flip", 5))) == [
        ("send", 0, 4), ("send", 4, 1), ("flip", 5), ("send", 6, 4)]
    assert list(body_steps(10, 4, Injection("stall", 4, stall_s=2))) == [
        ("send", 0, 4), ("pause", 2), ("send", 4, 4), ("send", 8, 2)]
    drip = list(body_steps(3000, 1 << 20, Injection("drip", drip_Bps=1000.0)))
    assert drip[:2] == [("pace", 1.024), ("send", 0, 1024)] and drip[-2] == ("pace", 3.0)


# -- seeded, capped --------------------------------------------------------------------------

def outcomes(root: Path, seed: int, gets: int = 24) -> list[tuple[int, int]]:
    """(status, body length) of `gets` GETs of the layer against a mixed fault registry."""
    digest, _, _ = blobs(root)
    rates = dict(error_503_rate=0.2, rate_limit_429_rate=0.1, cut_rate=0.2, flip_rate=0.1,
                 retry_after_s=0)
    seen = []
    with faulty(root, seed=seed, **rates) as server:
        for _ in range(gets):
            conn = connect(server)
            conn.request("GET", f"/v2/t/x/blobs/{digest}")
            resp = conn.getresponse()
            try:
                body = resp.read()
            except http.client.IncompleteRead as short:
                body = short.partial
            conn.close()
            seen.append((resp.status, len(body), hashlib.sha256(body).hexdigest()[:8]))
    return seen


def test_the_same_seed_gives_the_same_faults(root):
    first = outcomes(root, seed=5)
    assert first == outcomes(root, seed=5)
    assert first != outcomes(root, seed=6)
    statuses = {status for status, _, _ in first}
    assert {200, 503, 429} <= statuses
    print(f"faults injected in 24 GETs: {sum(s != 200 or n != BLOB_BYTES for s, n, _ in first)}")


def test_max_faults_caps_them(root):
    digest, data, _ = blobs(root)
    with faulty(root, error_503_rate=1.0, max_faults=2) as server:
        statuses = [fetch(server, f"/v2/t/x/blobs/{digest}")[0] for _ in range(4)]
    assert statuses == [503, 503, 200, 200]


# -- the command line ------------------------------------------------------------------------

def serve(args: list[str], tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "registry", "serve", *args],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("spec, message", [
    ("cut_rate=2", "registry: --faults: faults.cut_rate: must be between 0 and 1, not 2.0"),
    ("stall_s=1,cut_rte=0.1", "registry: --faults: faults.cut_rte: unknown key"),
    ("cut_rate=0.7,error_503_rate=0.7", "registry: --faults: faults: the rates add up to 1.4"),
    ("nowhere.toml", "registry: --faults: nowhere.toml: no such file"),
])
def test_a_bad_faults_flag_is_one_line_and_exit_2(root, tmp_path, spec, message):
    proc = serve(["--root", str(root), "--listen", "127.0.0.1:0", "--faults", spec], tmp_path)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and err.startswith(message) and err.count("\n") == 1, err


def test_the_faults_flag_serves_faults(root, tmp_path):
    digest, data, _ = blobs(root)
    (tmp_path / "faults.toml").write_text("error_503_rate = 1.0\nmax_faults = 1\n")
    ready = tmp_path / "ready"
    proc = serve(["--root", str(root), "--listen", "127.0.0.1:0", "--ready-file", str(ready),
                  "--faults", str(tmp_path / "faults.toml"), "--faults-seed", "9"], tmp_path)
    try:
        deadline = time.monotonic() + 20
        while not (ready.exists() and ready.read_text().endswith("\n")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        host, port = ready.read_text().strip().split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        statuses = []
        for _ in range(2):
            conn.request("GET", f"/v2/t/x/blobs/{digest}")
            resp = conn.getresponse()
            resp.read()
            statuses.append(resp.status)
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert statuses == [503, 200] and proc.returncode == 0
    assert "fault: 503" in err and "registry faults:" in err
