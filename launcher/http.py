"""HTTP/1.1 over a unix socket, the way dockerd serves its Engine API.

dockerd listens on /var/run/docker.sock and answers plain HTTP/1.1; clients
(the docker CLI, the Docker SDK) keep connections alive, and some answers are
streams (pull progress, logs) sent with chunked transfer encoding, as Go's
net/http sends a body of unknown length; the Docker SDK reads a body as a stream
of JSON messages only when it is chunked.  This module
is the transport only: routing by method and path pattern, JSON answers with
Docker's error body `{"message": "..."}`, and a version prefix (`/v1.41/...`)
that is accepted and stripped.  Whatever a client sends (a request line that
is not HTTP, headers too long or too slow, a body that lies about its length or
is not JSON), it gets Docker's JSON error and the daemon keeps serving;
``launcher.httpbody`` reads the body and keeps the deadlines.
"""
from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import select
import socket
import socketserver
import stat
import sys
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from launcher.httpbody import BodyError, DeadlineReader, read_body
from launcher.httpstream import Stream

log = logging.getLogger("docksim.daemon")
VERSION_PREFIX = re.compile(r"^/v\d+\.\d+(?=/)")
MAX_BODY_BYTES = 4 * 1024 * 1024  # create/tag/... bodies are a few kB; dockerd sets no limit
HEADER_TIMEOUT_S = 60.0  # for a request's line and headers, and for its body


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

    def number(self, name: str, default: float | None = None) -> float | None:
        """A numeric query parameter (`?t=10`); anything else is the client's error."""
        text = self.arg(name)
        if not text:
            return default
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ApiError(400, f"invalid value for {name}: {text!r}")
        return value

    def json(self) -> dict:
        h = self.handler
        h.reader.arm(h.header_timeout_s)
        try:
            raw = read_body(h.headers, h.rfile, MAX_BODY_BYTES)
        except BodyError as exc:
            raise ApiError(exc.status, exc.message) from None
        except TimeoutError:
            raise ApiError(408, "the request body did not arrive in time") from None
        finally:
            h.reader.disarm()
        h.body_read = True
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # RecursionError: [[[[... nested too deep
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
    header_timeout_s = HEADER_TIMEOUT_S

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # replaced by a reader that keeps a deadline
        self.reader = DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self) -> None:
        """One request: once its first byte is here, its line and headers must
        arrive within the deadline.  A kept-alive connection may idle before it
        without limit, as under Go's server when only ReadHeaderTimeout is set
        (a client reusing a pooled connection must not find it closed)."""
        self.reader.disarm()
        if self.rfile.peek(1):  # b"": the client closed; the parent sees that too
            self.reader.arm(self.header_timeout_s)
        super().handle_one_request()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What the HTTP parser refuses (not HTTP, a line or header too long, too
        many headers, an unknown version) gets Docker's JSON error body, not
        http.server's HTML page, and the connection closes."""
        short = self.responses.get(code, ("Error",))[0]
        if self.request_version in ("", "HTTP/0.9"):
            self.request_version = "HTTP/1.1"  # else no status line would be sent
        self.close_connection = True
        body = json.dumps({"message": message or short}).encode()
        try:
            self.send_response(code, short)
            self.send_header("Connection", "close")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            pass  # the client is gone; nothing to tell it

    def address_string(self) -> str:
        return "unix"

    def log_message(self, fmt: str, *args) -> None:  # one line per request, through logging
        log.debug("%s " + fmt, self.address_string(), *args)

    def _dispatch(self) -> None:
        began = time.monotonic()
        self.reader.disarm()  # the answer may take long (pull, wait, logs -f)
        self.stream = None
        self.body_read = False
        if self.request_version == "HTTP/0.9":  # "GET /path" with no version: Go refuses it
            self.send_error(400, "malformed HTTP request: no HTTP version")
            return
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
        if self._body_left():
            self.close_connection = True
        log.info("%s %s %s %.1f ms", self.command, parts.path, status,
                 1000 * (time.monotonic() - began))

    def _body_left(self) -> bool:
        """True when the request's body was not read: it would be taken for the
        next request, so the connection must close after the answer."""
        return not self.body_read and (self.headers.get("Content-Length", "0").strip() != "0"
                                       or "Transfer-Encoding" in self.headers)

    def _fail(self, status: int, message: str) -> None:
        """Docker's error body; once a stream has begun, the status line is gone,
        so the connection is closed without the last chunk (the client sees a
        truncated body, as with dockerd)."""
        if self.stream is None:
            try:
                self._send_json(status, {"message": message})
            except OSError:  # the client left before its answer
                self.close_connection = True
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
        if self._body_left():
            self.send_header("Connection", "close")  # tells the client, sets close_connection
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = _dispatch


class UnixApiServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False
    # socketserver's default backlog of 5 makes a burst of clients fail with EAGAIN
    # (Go's dialer, and Python's with a timeout, connect without blocking); Go's
    # listener, and so dockerd's, asks for the system's maximum
    request_queue_size = socket.SOMAXCONN

    def server_bind(self) -> None:
        socketserver.UnixStreamServer.server_bind(self)
        os.chmod(self.server_address, 0o660)  # like docker.sock: owner and group only

    def handle_error(self, request, client_address) -> None:
        """A connection's thread failed: a client that hung up is routine, anything
        else is logged once (socketserver would print a traceback to stderr)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.debug("connection ended: %s", exc)
        else:
            log.error("connection handler failed", exc_info=exc)


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


def make_server(socket_path: str, router: Router,
                header_timeout_s: float = HEADER_TIMEOUT_S) -> UnixApiServer:
    """Bind the API socket; raises OSError with a clear text when it is taken."""
    if socket_in_use(socket_path):
        raise OSError(f"{socket_path} is in use (another daemon is listening there)")
    if os.path.exists(socket_path):
        os.unlink(socket_path)  # a stale socket left by a killed daemon
    handler = type("Handler", (ApiHandler,), {"router": router,
                                              "header_timeout_s": header_timeout_s})
    return UnixApiServer(socket_path, handler)
