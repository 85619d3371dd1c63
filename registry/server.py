"""The registry on the wire: real HTTP/1.1 on a loopback port, one thread per connection.

Clients (dockerd, containerd, skopeo, our puller) keep connections alive and
open several at once for parallel layer downloads, as they do against Docker
Hub.  Each request is answered by `registry.api`, then shaped by the emulated
link (`registry.link`): one round trip before the status line, body bytes paced
on the shared link.  Without a bandwidth limit, blob bodies go out with
sendfile(2), straight from the page cache to the socket.

One log line per request (logger "registry.server"), for example
``GET /v2/lecture/hello/blobs/sha256:ab12cd34ef56… 200 20000000 B 1.62 s``.
"""
from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from registry.api import RegistryAPI, RegistryError, Response
from registry.layout import RegistryLayout
from registry.link import Link, LinkClosed

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 60.0  # an idle keep-alive connection is closed after this
_DIGEST_IN_PATH = re.compile(r"(sha256:[0-9a-f]{12})[0-9a-f]{52}")


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
        if self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers:
            self.close_connection = True  # a request body this server does not read
        path, _, query = self.path.partition("?")
        try:
            response = self.server.api.handle(self.command, path, parse_qs(query), self.headers)
        except Exception:  # a bug or an unreadable file: answer, keep serving
            log.exception("%s %s failed", self.command, self.path)
            response = RegistryError(500, "UNKNOWN", "internal server error").response()
        sent_bytes = 0
        try:
            self.server.link.round_trip()
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(response.body_bytes))
            self.end_headers()
            if self.command != "HEAD":
                sent_bytes = self._send_body(response)
        except (LinkClosed, ConnectionError, socket.timeout) as error:
            self.close_connection = True
            log.debug("%s %s abandoned: %r", self.command, self.path, error)
        log.info("%s %s %d %d B %.2f s", self.command, _DIGEST_IN_PATH.sub(r"\1…", path),
                 response.status, sent_bytes, time.monotonic() - started_s)

    def _send_body(self, response: Response) -> int:
        sender = self.server.link.sender()
        chunk_bytes = self.server.link.chunk_bytes
        if response.file is None:
            view = memoryview(response.body)
            for start in range(0, len(view), chunk_bytes):
                piece = view[start:start + chunk_bytes]
                sender.wait_for_slot(len(piece))
                self.wfile.write(piece)
            return len(view)
        sent_bytes = 0
        with open(response.file, "rb") as blob:
            while sent_bytes < response.length:
                n_bytes = min(chunk_bytes, response.length - sent_bytes)
                sender.wait_for_slot(n_bytes)
                done = self.connection.sendfile(blob, response.offset + sent_bytes, n_bytes)
                sent_bytes += done
                if done < n_bytes:  # the file shrank under us: give up on this connection
                    raise ConnectionAbortedError(f"{response.file} ended early")
        return sent_bytes

    # http.server writes its own access log to stderr; route everything through logging.
    def log_request(self, code="-", size="-") -> None:
        pass

    def log_message(self, format: str, *args) -> None:
        log.debug("%s: " + format, self.address_string(), *args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many clients may connect at once

    def __init__(self, address: tuple[str, int], api: RegistryAPI, link: Link):
        self.api, self.link = api, link
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


class RegistryServer:
    """An OCI registry serving `root` on a loopback address.

    `port` 0 picks a free port; `bandwidth_mbps` (None: unlimited) and `rtt_ms`
    shape every response as described in `registry.link`.  Use as a context
    manager, or call `start()` and `stop()`.
    """

    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 0,
                 bandwidth_mbps: float | None = None, rtt_ms: float = 0.0):
        if not ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).version != 4:
            raise ValueError(f"the registry listens on IPv4 loopback addresses only, not {host!r}")
        Link(bandwidth_mbps, rtt_ms)  # check the numbers now, not at start()
        self.root = Path(root)
        self.host, self.port = host, port
        self.bandwidth_mbps, self.rtt_ms = bandwidth_mbps, rtt_ms
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
        self._httpd = _HTTPServer((self.host, self.port), RegistryAPI(RegistryLayout(self.root)), link)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"registry:{self.port}", daemon=True)
        self._thread.start()
        log.info("registry serving %s at %s (bandwidth %s, rtt %g ms)", self.root, self.url,
                 f"{self.bandwidth_mbps:g} Mbit/s" if self.bandwidth_mbps else "unlimited", self.rtt_ms)
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
        self._httpd = self._thread = None

    def __enter__(self) -> "RegistryServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
