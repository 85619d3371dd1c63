"""HTTP/1.1 over a unix socket, the way dockerd serves its Engine API.

dockerd listens on /var/run/docker.sock and answers plain HTTP/1.1; clients
(the docker CLI, the Docker SDK) keep connections alive, and some answers are
streams (pull progress, logs) sent with chunked transfer encoding, as Go's
net/http sends a body of unknown length; the Docker SDK reads a body as a stream
of JSON messages only when it is chunked.  This module
is the transport only: routing by method and path pattern, JSON answers with
Docker's error body `{"message": "..."}`, and a version prefix (`/v1.41/...`)
that is accepted and stripped.
"""
from __future__ import annotations

import json
import logging
import os
import re
import select
import socket
import socketserver
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger("docksim.daemon")
VERSION_PREFIX = re.compile(r"^/v\d+\.\d+(?=/)")
MAX_BODY_BYTES = 4 * 1024 * 1024


class ApiError(Exception):
    """An answer other than success: status code and Docker's error message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Request:
    """What a route handler sees: method, path parameters, query, JSON body."""

    def __init__(self, handler: "ApiHandler", params: dict[str, str], query: dict[str, list[str]]):
        self.handler = handler
        self.params = params
        self.query = query
        self.request_tag = handler.headers.get("X-Docksim-Request", "")

    def arg(self, name: str, default: str = "") -> str:
        return self.query.get(name, [default])[-1]

    def flag(self, name: str) -> bool:
        return self.arg(name, "0").lower() in ("1", "true", "yes")

    def json(self) -> dict:
        length = int(self.handler.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ApiError(413, f"request body of {length} bytes is over the limit")
        raw = self.handler.rfile.read(length) if length else b""
        self.handler.body_read = True
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, f"malformed JSON body: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the JSON body must be an object")
        return body

    def client_gone(self) -> bool:
        """True once the client has closed its end: what a long stream that has
        nothing to write (`docker events`) checks now and then."""
        conn = self.handler.connection
        try:
            readable, _, _ = select.select([conn], [], [], 0)
            return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def client_hung_up(self) -> bool:
        """True once the client has closed its connection entirely.  Unlike
        ``client_gone``, a client that only shut down its sending half is still
        there: the docker CLI does that on an attach connection when it has no
        stdin to send, and goes on reading the output."""
        try:
            poller = select.poll()
            poller.register(self.handler.connection, 0)  # POLLHUP and POLLERR come anyway
            return any(events & (select.POLLHUP | select.POLLERR | select.POLLNVAL)
                       for _, events in poller.poll(0))
        except (OSError, ValueError):
            return True

    def start_stream(self, content_type: str) -> "Stream":
        """Begin a streamed answer (status 200, chunked); the transport ends it
        with the last chunk when the handler returns."""
        h = self.handler
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Api-Version", "1.41")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.flush()
        h.stream = Stream(h.wfile)
        return h.stream

    def hijack(self, content_type: str) -> "Stream":
        """Take the connection over, as dockerd does for `attach`: a client that
        asked for `Upgrade: tcp` gets `101 UPGRADED`, any other a 200; then raw
        bytes follow until the daemon closes the connection."""
        h = self.handler
        upgrade = "upgrade" in h.headers.get("Connection", "").lower()
        if upgrade:
            h.send_response(101, "UPGRADED")
            h.send_header("Connection", "Upgrade")
            h.send_header("Upgrade", "tcp")
        else:
            h.send_response(200)
            h.send_header("Connection", "close")
        h.send_header("Content-Type", content_type)
        h.send_header("Api-Version", "1.41")
        h.end_headers()
        h.wfile.flush()
        h.close_connection = True
        h.stream = Stream(h.wfile, chunked=False)
        return h.stream


class Stream:
    """A body written piece by piece (chunked, or raw on a hijacked connection);
    a client that went away stops the writes."""

    def __init__(self, wfile, chunked: bool = True):
        self.wfile = wfile
        self.chunked = chunked
        self.broken = False
        self._lock = threading.Lock()  # pull progress arrives from download threads too
        self.closed = False

    def _send(self, raw: bytes) -> None:
        with self._lock:
            if self.broken or self.closed:
                return
            try:
                self.wfile.write(raw)
                self.wfile.flush()
            except OSError:
                self.broken = True

    def write(self, data: bytes) -> None:
        if data:
            self._send(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)

    def close(self) -> None:
        """The last (empty) chunk: the body is complete and the connection reusable."""
        if self.chunked:
            self._send(b"0\r\n\r\n")
        self.closed = True

    def json(self, message: dict) -> None:
        self.write(json.dumps(message).encode() + b"\r\n")


Handler = Callable[[Request], Any]


class Router:
    """Routes (method, path pattern) to handlers; `{name}` matches one segment,
    `{name*}` matches segments with slashes (image names contain them)."""

    def __init__(self):
        self.routes: list[tuple[str, re.Pattern, Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+)\*\}", r"(?P<\1>.+?)", pattern)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        self.routes.append((method, re.compile(f"^{regex}$"), handler))

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        methods = {"HEAD": ("HEAD", "GET")}.get(method, (method,))
        for route_method, regex, handler in self.routes:
            found = regex.match(path)
            if found and route_method in methods:
                return handler, {k: unquote(v) for k, v in found.groupdict().items()}
        raise ApiError(404, f"page not found: {method} {path}")


class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "docksim"
    router: Router  # set on the subclass made by serve()

    def address_string(self) -> str:
        return "unix"

    def log_message(self, fmt: str, *args) -> None:  # one line per request, through logging
        log.debug("%s " + fmt, self.address_string(), *args)

    def _dispatch(self) -> None:
        began = time.monotonic()
        self.stream = None
        self.body_read = False
        parts = urlsplit(self.path)
        path = VERSION_PREFIX.sub("", parts.path)
        status = 200
        try:
            handler, params = self.router.match(self.command, path)
            result = handler(Request(self, params, parse_qs(parts.query)))
            if self.stream is None:
                status = self._answer(result)
            else:
                self.stream.close()
                self.close_connection = self.close_connection or self.stream.broken
        except ApiError as exc:
            status = exc.status
            self._fail(exc.status, exc.message)
        except (BrokenPipeError, ConnectionResetError):
            status = 499
            self.close_connection = True
        except Exception as exc:  # a bug must not kill the daemon: answer 500 and log it
            log.exception("internal error on %s %s", self.command, self.path)
            status = 500
            self._fail(500, f"internal error: {exc}")
        if not self.body_read and (self.headers.get("Content-Length", "0") != "0"
                                   or "Transfer-Encoding" in self.headers):
            self.close_connection = True  # an unread body would be taken for the next request
        log.info("%s %s %s %.1f ms", self.command, parts.path, status,
                 1000 * (time.monotonic() - began))

    def _fail(self, status: int, message: str) -> None:
        """Docker's error body; once a stream has begun, the status line is gone,
        so the connection is closed without the last chunk (the client sees a
        truncated body, as with dockerd)."""
        if self.stream is None:
            self._send_json(status, {"message": message})
        else:
            self.close_connection = True

    def _answer(self, result: Any) -> int:
        if result is None:
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return 204
        if isinstance(result, tuple):
            status, body = result
        else:
            status, body = 200, result
        if isinstance(body, str):
            self._send(status, body.encode(), "text/plain; charset=utf-8")
        else:
            self._send_json(status, body)
        return status

    def _send_json(self, status: int, body: Any) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Api-Version", "1.41")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = _dispatch


class UnixApiServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False
    # socketserver's default backlog is 5: the 6th of many clients connecting at
    # once gets EAGAIN from connect() on a unix socket.  dockerd's Go listener
    # asks for the kernel's maximum, and so does docksim.
    request_queue_size = socket.SOMAXCONN

    def server_bind(self) -> None:
        socketserver.UnixStreamServer.server_bind(self)
        os.chmod(self.server_address, 0o660)  # like docker.sock: owner and group only


def socket_in_use(path: str) -> bool:
    """True when something answers on path (a live daemon); a stale file is not in use."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return True
    except FileNotFoundError:
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def make_server(socket_path: str, router: Router) -> UnixApiServer:
    """Bind the API socket; raises OSError with a clear text when it is taken."""
    if socket_in_use(socket_path):
        raise OSError(f"{socket_path} is in use (another daemon is listening there)")
    if os.path.exists(socket_path):
        os.unlink(socket_path)  # a stale socket left by a killed daemon
    handler = type("Handler", (ApiHandler,), {"router": router})
    return UnixApiServer(socket_path, handler)
