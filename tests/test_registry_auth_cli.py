"""docksim's registry with `--auth token` (pushes need a token with the push
scope) and as `simulate.py registry` (one log line per request, exit 2 with one
line when the port is taken)."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

from registry.server import RegistryServer
from tests.test_registry_push import REPO_ROOT, Client, codes, push_blob, sha


# -- token auth ------------------------------------------------------------------------

def token(url: str, *scopes: str) -> str:
    query = "&".join(f"scope={s}" for s in scopes)
    status, _, body = Client(url)("GET", f"/token?service=docksim-registry&{query}")
    assert status == 200
    answer = json.loads(body)
    assert answer["token"] == answer["access_token"] and answer["expires_in"] > 0
    return answer["token"]


def test_push_with_token_auth(tmp_path):
    with RegistryServer(tmp_path / "registry", auth="token") as server:
        status, headers, body = Client(server.url)("POST", "/v2/lecture/app/blobs/uploads/")
        assert status == 401 and codes(body) == ["UNAUTHORIZED"]
        challenge = headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer realm=\"http://127.0.0.1:")
        assert 'service="docksim-registry"' in challenge
        assert 'scope="repository:lecture/app:pull,push"' in challenge
        pull_only = Client(server.url, token(server.url, "repository:lecture/app:pull"))
        status, headers, _ = pull_only("POST", "/v2/lecture/app/blobs/uploads/")
        assert status == 401 and 'error="insufficient_scope"' in headers["WWW-Authenticate"]
        pusher = Client(server.url, token(server.url, "repository:lecture/app:pull,push"))
        push_blob(pusher, "lecture/app", b"with a token")
        assert pusher("POST", "/v2/lecture/other/blobs/uploads/")[0] == 401  # another repository
        forged = Client(server.url, pusher.token[:-4] + "AAAA")
        assert forged("HEAD", f"/v2/lecture/app/blobs/{sha(b'with a token')}")[0] == 401


# -- simulate.py registry ----------------------------------------------------------------

def test_simulate_registry_serves_and_logs(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "simulate.py", "registry", "--listen", f"127.0.0.1:{port}",
                                "--root", str(tmp_path / "registry")], cwd=REPO_ROOT,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                c = Client(f"http://127.0.0.1:{port}")
                assert c("GET", "/v2/")[0] == 200
                push_blob(c, "lecture/app", b"via the CLI")
                c.close()
                break
            except ConnectionRefusedError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    requests = [line for line in stderr.splitlines() if " /v2/" in line]
    assert [line.split()[3:6] for line in requests][-3:] == [
        ["GET", "/v2/", "200"], ["POST", "/v2/lecture/app/blobs/uploads/", "202"],
        ["PUT", requests[-1].split()[4], "201"]]


def test_simulate_registry_on_a_taken_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "simulate.py", "registry", "--listen", f"127.0.0.1:{port}",
                              "--root", str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in run.stderr
