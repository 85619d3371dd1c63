"""The registry on the wire: real HTTP/1.1 on a loopback port, one thread per connection.

Clients (dockerd, containerd, skopeo, our puller) keep connections alive and
open several at once for parallel layer downloads, as they do against Docker
Hub.  Each request is answered by `registry.api`, then shaped by the emulated
link (`registry.link`): one round trip before the status line, body bytes paced
on the shared link.  Blob bodies go out with sendfile(2), straight from the
page cache to the socket (zero-copy), in link-sized slices when the link is
limited.  Request bodies (pushes) are read as streams (`registry.httpbody`).
Optional: token auth (`auth="token"`, `registry.tokens`) and deliberate faults
(`registry.faults`: 503, 429, stalls, cuts, flipped bytes, slow drips).

One log line per request (logger "registry.server"), for example
``GET /v2/lecture/hello/blobs/sha256:ab12cd34ef56… 200 20000000 B 1.62 s``.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from registry.api import RegistryAPI, RegistryError, Response
from registry.faults import Faults, Injection, body_steps
from registry.httpbody import BodyError, RequestBody
from registry.layout import RegistryLayout
from registry.link import Link, LinkClosed
from registry.tokens import TokenAuth
from registry.uploads import IDLE_LIMIT_S

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 60.0  # an idle keep-alive connection is closed after this
DRAIN_BYTES = 16 << 20  # a refused request's body is read up to this, to keep the connection
_DIGEST_IN_PATH = re.compile(r"(sha256:[0-9a-f]{12})[0-9a-f]{52}")


class _FaultCut(ConnectionAbortedError):
    """A body cut on purpose (registry.faults)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"     # keep-alive, as every registry client expects
    server_version = "docksim-registry/1"
    timeout = IDLE_TIMEOUT_S
    disable_nagle_algorithm = True    # else a small body after the headers waits for a delayed ACK
    server: "_HTTPServer"

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _serve(self) -> None:
        started_s = time.monotonic()
        path, _, query = self.path.partition("?")
        body = None
        try:
            body = RequestBody.from_headers(self.rfile, self.headers)
            response = self.server.api.handle(self.command, path, parse_qs(query), self.headers, body)
        except BodyError as error:
            response = RegistryError(400, "BLOB_UPLOAD_INVALID", str(error)).response()
        except Exception:  # a bug or an unreadable file: answer, keep serving
            log.exception("%s %s failed", self.command, self.path)
            response = RegistryError(500, "UNKNOWN", "internal server error").response()
        if not self._drained(body):
            self.close_connection = True  # the rest of the body would be read as the next request
            response.headers["Connection"] = "close"
        self._sent_bytes, note = 0, ""
        injection = self._injection(path, response)
        if injection is not None:
            note = f" (fault: {injection.describe()})"
            response = injection.refusal() or response
        try:
            self.server.link.round_trip()
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(response.body_bytes))
            self.end_headers()
            if self.command != "HEAD":
                self._send_body(response, injection)
        except (LinkClosed, ConnectionError, socket.timeout) as error:
            self.close_connection = True
            note = f" (cut: {error})" if isinstance(error, _FaultCut) else note + " (abandoned)"
        log.info("%s %s %d %d B %.2f s%s", self.command, _DIGEST_IN_PATH.sub(r"\1…", path),
                 response.status, self._sent_bytes, time.monotonic() - started_s, note)

    def _injection(self, path: str, response: Response) -> Injection | None:
        """The fault (if any) this GET of a blob body meets."""
        faults = self.server.faults
        if (faults is None or self.command != "GET" or response.file is None
                or response.status not in (200, 206)):
            return None
        return faults.for_blob(path, response)

    def _drained(self, body: RequestBody | None) -> bool:
        """Read what a handler left of a refused request's body (up to DRAIN_BYTES),
        so the connection can serve the next request; False if it cannot."""
        if body is None:
            return False
        try:
            while not body.finished and body.received < DRAIN_BYTES:
                body.read(1 << 20)
        except (BodyError, OSError):
            return False
        return body.finished

    def _send_body(self, response: Response, injection: Injection | None = None) -> None:
        """Send the body, as `injection` (a fault) has it, counting in
        `self._sent_bytes` what went out."""
        sender = self.server.link.sender()
        chunk_bytes = self.server.link.chunk_bytes
        if response.file is None:
            view = memoryview(response.body)
            for start in range(0, len(view), chunk_bytes):
                piece = view[start:start + chunk_bytes]
                sender.wait_for_slot(len(piece))
                self.wfile.write(piece)
                self._sent_bytes += len(piece)
            return
        link = self.server.link
        began_s = time.monotonic()
        with open(response.file, "rb") as blob:
            for step in body_steps(response.length, chunk_bytes, injection):
                if step[0] == "send":
                    _, start, n_bytes = step
                    sender.wait_for_slot(n_bytes)
                    done = self.connection.sendfile(blob, response.offset + start, n_bytes)
                    self._sent_bytes += done
                    if done < n_bytes:  # the file shrank under us: give up on this connection
                        raise ConnectionAbortedError(f"{response.file} ended early")
                elif step[0] == "pause":
                    link.sleep_until(time.monotonic() + step[1])
                elif step[0] == "pace":
                    link.sleep_until(began_s + step[1])
                elif step[0] == "flip":
                    sender.wait_for_slot(1)
                    byte = os.pread(blob.fileno(), 1, response.offset + step[1])
                    self.wfile.write(bytes([byte[0] ^ 0xFF]))
                    self._sent_bytes += 1
                else:  # "cut"
                    raise _FaultCut(f"fault injected after {self._sent_bytes} of "
                                    f"{response.length} bytes")

    # http.server writes its own access log to stderr; route everything through logging.
    def log_request(self, code="-", size="-") -> None:
        pass

    def log_message(self, format: str, *args) -> None:
        log.debug("%s: " + format, self.address_string(), *args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many clients may connect at once

    def __init__(self, address: tuple[str, int], api: RegistryAPI, link: Link,
                 faults: Faults | None = None):
        self.api, self.link, self.faults = api, link, faults
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handler threads blocked on idle keep-alive connections."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer

    def handle_error(self, request, client_address) -> None:
        log.debug("error while serving %s", client_address, exc_info=True)


# harness/netns.py gives the registry an address in this range, inside a network
# namespace docksim made itself; nothing outside loopback and that range is served.
NAMESPACE_NET = ipaddress.ip_network("10.213.0.0/16")


def allowed_address(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 4 and (address.is_loopback or address in NAMESPACE_NET)


class RegistryServer:
    """An OCI registry serving `root` on a loopback address.

    `port` 0 picks a free port; `bandwidth_mbps` (None: unlimited) and `rtt_ms`
    shape every response as described in `registry.link`.  `auth="token"`
    requires bearer tokens from the registry's own `/token` endpoint; `faults`
    (tests only) makes it misbehave on purpose.  Pushes: an upload session idle
    for `upload_idle_s` is dropped with its bytes; `max_blob_bytes` (None: no
    limit) caps one pushed blob.  Use as a context manager, or call `start()`
    and `stop()`.
    """

    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 0,
                 bandwidth_mbps: float | None = None, rtt_ms: float = 0.0,
                 auth: str | None = None, faults: Faults | None = None,
                 upload_idle_s: float = IDLE_LIMIT_S, max_blob_bytes: int | None = None):
        if auth not in (None, "none", "token"):
            raise ValueError(f"auth must be None or 'token', not {auth!r}")
        if not allowed_address(host):
            raise ValueError(f"the registry listens on IPv4 loopback addresses, or docksim's "
                             f"own namespace range {NAMESPACE_NET}, only, not {host!r}")
        Link(bandwidth_mbps, rtt_ms)  # check the numbers now, not at start()
        self.root = Path(root)
        self.host, self.port = host, port
        self.bandwidth_mbps, self.rtt_ms = bandwidth_mbps, rtt_ms
        self.auth = None if auth == "none" else auth
        self.faults = faults
        self.upload_idle_s, self.max_blob_bytes = upload_idle_s, max_blob_bytes
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "RegistryServer":
        """Listen (OSError when the port is taken) and serve in a background thread."""
        if self._httpd is not None:
            raise RuntimeError("the registry is already running")
        link = Link(self.bandwidth_mbps, self.rtt_ms)
        api = RegistryAPI(RegistryLayout(self.root), TokenAuth() if self.auth == "token" else None,
                          self.upload_idle_s, self.max_blob_bytes)
        try:
            self._httpd = _HTTPServer((self.host, self.port), api, link, self.faults)
        except BaseException:
            api.close()
            raise
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"registry:{self.port}", daemon=True)
        self._thread.start()
        log.info("registry serving %s at %s (bandwidth %s, rtt %g ms%s)", self.root, self.url,
                 f"{self.bandwidth_mbps:g} Mbit/s" if self.bandwidth_mbps else "unlimited", self.rtt_ms,
                 ", token auth" if self.auth else "")
        return self

    def stop(self) -> None:
        """Stop listening, abandon responses under way, close connections."""
        if self._httpd is None:
            return
        self._httpd.link.close()
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        self._thread.join()
        self._httpd.api.close()
        self._httpd = self._thread = None

    def __enter__(self) -> "RegistryServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
