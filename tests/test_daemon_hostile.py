"""The daemon's API socket against hostile and broken clients, in raw HTTP.

Everything here is bytes on the unix socket of a real `python -m launcher`
(the `socket` module, parsed with `http.client`): the socket's owner and mode;
bodies that are not JSON, of the wrong JSON types, too large, cut short or
badly chunked; unknown images and containers; request lines and headers that
are not HTTP; clients that hang up mid-body or send their headers a byte at a
time.  Each gets Docker's JSON error `{"message": ...}` or a closed connection,
and afterwards the daemon still answers `/_ping`, with no traceback in its log.
The header deadline is tested on an in-process server with a short one.
"""
from __future__ import annotations

import errno
import http.client
import json
import os
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path

import pytest

from launcher.http import MAX_BODY_BYTES, Router, make_server
from tests.conftest import ALPHA, running_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")

NOBODY = 65534


@pytest.fixture(scope="module")
def daemon(registry, tmp_path_factory):
    with running_daemon(registry.url, tmp_path_factory.mktemp("hostile-daemon")) as process:
        client = process.client()
        client.images.pull("docksim-test/alpha", tag="1")
        client.close()
        yield process


@pytest.fixture(autouse=True)
def still_serving(daemon):
    """After every test: the same daemon process answers, no container was left
    behind, and nothing it received made it print a traceback."""
    log_offset = daemon.log.stat().st_size
    yield
    assert daemon.proc.poll() is None
    assert ping(daemon.socket) == (200, b"OK")
    status, _, body = exchange(daemon.socket, request("GET", "/containers/json?all=1"))
    assert (status, json.loads(body)) == (200, [])
    with open(daemon.log, "rb") as log:
        log.seek(log_offset)
        assert b"Traceback" not in log.read()


def connect(path: Path, timeout_s: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    sock.connect(str(path))
    return sock


def request(method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            version: str = "v1.41") -> bytes:
    """A well-formed HTTP/1.1 request; Content-Length set unless headers say otherwise."""
    lines = [f"{method} /{version}{path} HTTP/1.1", "Host: docker"]
    headers = dict(headers or {})
    if body is not None and "Transfer-Encoding" not in headers:
        headers.setdefault("Content-Length", str(len(body)))
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def read_answer(sock: socket.socket, method: str = "GET") -> tuple[int, dict, bytes]:
    answer = http.client.HTTPResponse(sock, method=method)
    answer.begin()
    return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()


def exchange(path: Path, raw: bytes) -> tuple[int, dict, bytes]:
    """Send raw bytes on a new connection; the answer's status, headers and body."""
    with connect(path) as sock:
        send_quietly(sock, raw)  # the daemon may answer and close before it read all
        return read_answer(sock, raw.split(b" ", 1)[0].decode(errors="replace"))


def ping(path: Path) -> tuple[int, bytes]:
    status, _, body = exchange(path, request("GET", "/_ping"))
    return status, body


def docker_error(status_headers_body) -> str:
    """The message of Docker's JSON error body (asserting that is what it is)."""
    _, headers, body = status_headers_body
    assert headers["content-type"] == "application/json"
    message = json.loads(body)
    assert set(message) == {"message"} and isinstance(message["message"], str)
    return message["message"]


# -- the socket ------------------------------------------------------------------

def test_socket_is_owned_by_root_with_mode_0660(daemon, tmp_path):
    """As /var/run/docker.sock: root's, read-write for owner and group only.  A
    hard link in an open directory shows it is the mode that keeps `nobody` out:
    refused alone, let in when given the socket's group."""
    st = os.stat(daemon.socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o660)
    open_dir = Path(tempfile.mkdtemp(prefix="docksim-sock-"))
    try:
        open_dir.chmod(0o755)
        link = open_dir / "docker.sock"
        os.link(daemon.socket, link)
        outsider = connect_as(link, NOBODY, NOBODY, [])
        member = connect_as(link, NOBODY, NOBODY, [st.st_gid])
    finally:
        for entry in open_dir.iterdir():
            entry.unlink()
        open_dir.rmdir()
    assert (outsider, member) == (errno.EACCES, 0)


def connect_as(path: Path, uid: int, gid: int, groups: list[int]) -> int:
    """0 if a process with these ids may connect to the socket, else the errno.
    (A forked child: Python itself may live where `nobody` cannot read it.)"""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
                code = 0
            except OSError as exc:
                code = exc.errno
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


# -- bodies ----------------------------------------------------------------------

@pytest.mark.parametrize("body, words", [
    (b'{"Image": "x", ', "malformed JSON"),
    (b"[1, 2]", "must be an object"),
    (b"\xff\xfe\x00{", "malformed JSON"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "malformed JSON", id="nested-100000-deep"),
    (b'{"Image": 5}', "cannot unmarshal number into Go struct field Config.Image of type string"),
    (b'{"Image": "docksim-test/alpha:1", "Cmd": 5}', "Config.Cmd"),
    (b'{"Image": "docksim-test/alpha:1", "Env": [1]}', "Config.Env of type []string"),
    (b'{"Image": "docksim-test/alpha:1", "Labels": ["a"]}', "cannot unmarshal array"),
    (b'{"Image": "docksim-test/alpha:1", "HostConfig": []}', "Config.HostConfig"),
    (b'{"Image": "docksim-test/alpha:1", "HostConfig": {"Memory": "lots"}}',
     "cannot unmarshal string into Go struct field HostConfig.Memory of type int64"),
    (b'{"Image": "docksim-test/alpha:1", "HostConfig": {"CapAdd": "ALL"}}', "HostConfig.CapAdd"),
    (b'{"Image": "docksim-test/alpha:1", "StopTimeout": 1.5}', "Config.StopTimeout"),
    (b'{"Image": "docksim-test/alpha:1", "Tty": "yes"}', "Config.Tty of type bool"),
    (b"{}", "Config cannot be empty"),
])
def test_bad_create_bodies_get_400_with_a_message(daemon, body, words):
    """Not JSON, not an object, nested beyond the parser, or a field of the wrong
    type: a 400 naming the problem (dockerd's json.Unmarshal wording), no container."""
    answer = exchange(daemon.socket, request("POST", "/containers/create", body,
                                             {"Content-Type": "application/json"}))
    assert answer[0] == 400
    assert words in docker_error(answer)


def test_oversize_body_gets_413_and_is_not_read(daemon):
    """A body declared larger than the limit is refused before it is read; the
    client may still be sending when the answer and the close arrive."""
    size = MAX_BODY_BYTES + 1
    head = request("POST", "/containers/create", None, {"Content-Type": "application/json",
                                                        "Content-Length": str(size)})
    with connect(daemon.socket) as sock:
        sock.sendall(head)
        sender = threading.Thread(target=send_quietly, args=(sock, b" " * size))
        sender.start()
        answer = read_answer(sock, "POST")
        sender.join(30)
    assert answer[0] == 413
    assert "over the limit" in docker_error(answer)
    assert answer[1]["connection"] == "close"


def send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the daemon closed the connection: expected


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def test_chunked_bodies_are_read_and_limited(daemon):
    """Go's server reads chunked bodies, so does docksim: a create split in chunks
    is understood (404 for its unknown image); chunks beyond the limit get 413, a
    malformed chunk size 400, another transfer encoding 501."""
    te = {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}
    answer = exchange(daemon.socket, request("POST", "/containers/create",
                                             chunked(b'{"Image": "docksim-', b'test/nope:1"}'), te))
    assert answer[0] == 404
    assert docker_error(answer) == "No such image: docksim-test/nope:1"
    piece = b" " * (1 << 20)
    answer = exchange(daemon.socket, request("POST", "/containers/create",
                                             chunked(*[piece] * 5), te))
    assert answer[0] == 413 and "over the limit" in docker_error(answer)
    answer = exchange(daemon.socket, request("POST", "/containers/create",
                                             b"zz\r\n{}\r\n0\r\n\r\n", te))
    assert answer[0] == 400 and "chunk size" in docker_error(answer)
    answer = exchange(daemon.socket, request("POST", "/containers/create", b"{}",
                                             {"Transfer-Encoding": "gzip"}))
    assert answer[0] == 501


@pytest.mark.parametrize("length", ["abc", "-5", "1e3", "10, 20"])
def test_invalid_content_length_gets_400(daemon, length):
    """A negative length would have the daemon read until the client closes."""
    answer = exchange(daemon.socket, request("POST", "/containers/create", None,
                                             {"Content-Length": length}) + b"{}")
    assert answer[0] == 400
    assert "Content-Length" in docker_error(answer)


def test_client_leaving_mid_body_does_not_disturb_the_daemon(daemon):
    """Content-Length 1000, ten bytes, then the client hangs up (both halves, and
    the write half only): the daemon drops the request and keeps serving."""
    head = request("POST", "/containers/create", None, {"Content-Length": "1000"})
    with connect(daemon.socket) as sock:
        sock.sendall(head + b'{"Image": ')
    assert ping(daemon.socket) == (200, b"OK")
    with connect(daemon.socket) as sock:
        sock.sendall(head + b'{"Image": ')
        sock.shutdown(socket.SHUT_WR)
        answer = read_answer(sock, "POST")
    assert answer[0] == 400 and "unexpected EOF" in docker_error(answer)


# -- unknown things and bad parameters --------------------------------------------

@pytest.mark.parametrize("method, path, body, message", [
    ("POST", "/containers/create", b'{"Image": "docksim-test/nope:1"}',
     "No such image: docksim-test/nope:1"),
    ("GET", "/images/docksim-test/nope:1/json", None, "No such image: docksim-test/nope:1"),
    ("DELETE", "/images/docksim-test/nope:1", None, "No such image: docksim-test/nope:1"),
    ("GET", "/containers/nosuch/json", None, "No such container: nosuch"),
    ("POST", "/containers/nosuch/start", None, "No such container: nosuch"),
    ("POST", "/containers/nosuch/stop?t=abc", None, "No such container: nosuch"),
    ("POST", "/containers/nosuch/kill", None, "No such container: nosuch"),
    ("POST", "/containers/nosuch/wait", None, "No such container: nosuch"),
    ("GET", "/containers/nosuch/logs?stdout=1", None, "No such container: nosuch"),
    ("DELETE", "/containers/nosuch?force=1", None, "No such container: nosuch"),
])
def test_unknown_images_and_containers_get_404(daemon, method, path, body, message):
    answer = exchange(daemon.socket, request(method, path, body))
    assert answer[0] == 404
    assert docker_error(answer) == message


@pytest.mark.parametrize("path, words", [
    ("/containers/json?limit=abc", "invalid value for limit: 'abc'"),
    ("/containers/json?limit=nan", "invalid value for limit"),
    ("/containers/json?filters=%7Bnot-json", "filters"),
    ("/events?since=yesterday&until=1", "invalid timestamp 'yesterday'"),
])
def test_bad_query_parameters_get_400(daemon, path, words):
    answer = exchange(daemon.socket, request("GET", path))
    assert answer[0] == 400
    assert words in docker_error(answer)


def test_stop_with_a_bad_timeout_gets_400_and_leaves_the_container_running(daemon):
    client = daemon.client()
    container = client.containers.run(ALPHA, ["sleep", "30"], detach=True)
    try:
        answer = exchange(daemon.socket, request("POST", f"/containers/{container.id}/stop?t=inf"))
        assert answer[0] == 400 and "invalid value for t" in docker_error(answer)
        container.reload()
        assert container.status == "running"
    finally:
        container.remove(force=True)
        client.close()


# -- not HTTP at all --------------------------------------------------------------

@pytest.mark.parametrize("raw, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n", 400),
    (b"GET /_ping\r\n\r\n", 400),  # no version (HTTP/0.9)
    (b"GET /_ping HTTP/7.0\r\nHost: docker\r\n\r\n", 505),
    (b"GET /_ping HTTP/1.1.1\r\n\r\n", 400),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET /_ping HTTP/1.1\r\nX-Long: " + b"y" * 70_000 + b"\r\n\r\n", 431),
    (b"GET /_ping HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n", 431),
])
def test_requests_that_are_not_http_get_a_json_error(daemon, raw, status):
    """What Python's HTTP parser refuses gets a status line and Docker's JSON
    error body (not an HTML page), and the connection closes."""
    answer = exchange(daemon.socket, raw)
    assert answer[0] == status
    assert docker_error(answer)
    assert answer[1]["connection"] == "close"


@pytest.mark.parametrize("raw", [b"", b"\r\n", b"\x00" * 1000, b"GET"])
def test_fragments_then_hang_up_close_quietly(daemon, raw):
    """A client that sends a fragment and shuts its write half gets an answer or
    a closed connection, never a hang."""
    with connect(daemon.socket, timeout_s=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received == b"" or received.startswith(b"HTTP/1.1 4")


def test_many_slow_clients_do_not_block_others(daemon):
    """Fifty connections, each with half a request's headers, held open: a new
    client is still answered at once (a thread per connection, as dockerd has a
    goroutine per connection)."""
    slow = [connect(daemon.socket) for _ in range(50)]
    try:
        for sock in slow:
            sock.sendall(b"POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nContent-")
        began = time.monotonic()
        assert ping(daemon.socket) == (200, b"OK")
        elapsed_s = time.monotonic() - began
    finally:
        for sock in slow:
            sock.close()
    assert elapsed_s < 2.0
    print(f"\n/_ping with 50 half-sent requests open: {elapsed_s * 1000:.1f} ms")


# -- the header deadline, on an in-process server ----------------------------------

@pytest.fixture
def quick_server(tmp_path):
    """The daemon's HTTP layer alone, with a 0.5 s header deadline."""
    router = Router()
    router.add("GET", "/_ping", lambda req: "OK")
    router.add("POST", "/echo", lambda req: req.json())
    server = make_server(str(tmp_path / "api.sock"), router, header_timeout_s=0.5)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield tmp_path / "api.sock"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def closed_after_s(sock: socket.socket, trickle: bytes = b"", gap_s: float = 0.1) -> float:
    """Seconds until the server closes the connection, sending ``trickle`` a byte
    every ``gap_s`` meanwhile (a slowloris client)."""
    began = time.monotonic()
    sock.settimeout(gap_s)
    sent = 0
    while True:
        if sent < len(trickle):
            try:
                sock.sendall(trickle[sent:sent + 1])
            except OSError:
                return time.monotonic() - began
            sent += 1
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - began
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - began
        if time.monotonic() - began > 10:
            return float("inf")


def test_header_deadline_closes_slow_connections_not_idle_ones(quick_server):
    """Half a request line, then silence: closed at the deadline.  A byte every
    0.1 s (each recv would be in time): closed at the deadline all the same.  A
    kept-alive connection idle between requests stays open (Go's server, with
    only a header timeout, keeps it too) and serves the next request."""
    with connect(quick_server) as sock:
        sock.sendall(b"GET /_pi")
        silent_s = closed_after_s(sock)
    with connect(quick_server) as sock:
        slow_header = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nX-Slow: " + b"z" * 200
        trickle_s = closed_after_s(sock, slow_header)
    with connect(quick_server) as sock:
        sock.sendall(request("POST", "/echo", b'{"a": 1}'))
        first = read_answer(sock, "POST")
        sock.settimeout(1.5)  # three deadlines of silence
        with pytest.raises(TimeoutError):
            sock.recv(1)
        sock.settimeout(10)
        sock.sendall(request("GET", "/_ping"))
        second = read_answer(sock)
    assert first[0] == 200 and json.loads(first[2]) == {"a": 1}
    assert second[0] == 200 and second[2] == b"OK"
    for seconds in (silent_s, trickle_s):
        assert 0.4 <= seconds < 2.0
    assert ping(quick_server) == (200, b"OK")
    print(f"\nclosed after: silent {silent_s:.2f} s, trickling {trickle_s:.2f} s "
          f"(deadline 0.5 s); idle 1.5 s: kept")


def test_slow_body_is_refused_at_the_deadline(quick_server):
    """Headers in time, then a body that stops coming: 408 with a JSON message."""
    with connect(quick_server) as sock:
        sock.sendall(request("POST", "/echo", None, {"Content-Length": "100"}) + b'{"a": ')
        began = time.monotonic()
        answer = read_answer(sock, "POST")
        waited_s = time.monotonic() - began
    assert answer[0] == 408 and "in time" in docker_error(answer)
    assert 0.4 <= waited_s < 2.0
