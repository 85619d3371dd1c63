"""A registry client over HTTP: the requests `docker pull` sends.

dockerd resolves an image with `GET /v2/` (the API probe), the manifest by tag
(an index first when the image is multi-platform), then the image config blob,
and finally one `GET` per missing layer blob.  Each request here is one round
trip on a kept-alive connection.  A registry that answers 401 with a Bearer
challenge gets the token dance of `launcher.auth` and the request again.
Registries on 127.0.0.0/8 (and any `http://` URL given to the daemon) are spoken
to in plain HTTP, as dockerd does for loopback without `--insecure-registry`.
Blob GETs may carry `Range: bytes=N-` to resume, and follow one redirect
(registries on object storage send the bytes from elsewhere).
"""
from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import math
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from launcher.auth import AuthError, TokenSource, parse_challenge, pull_scope
from launcher.manifest import host_arch  # noqa: F401 (the daemon's import of it)

DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")
TIMEOUT_S = 60
_REDIRECTS = (301, 302, 303, 307, 308)


class PullError(Exception):
    """A pull that cannot go on; the text is what `docker pull` would print.

    `status` is the HTTP status dockerd answers when the pull fails before any
    progress was sent: 404 when the registry does not know the image, else 500.
    `retryable` marks failures the download manager tries again: a lost
    connection, a timeout, a 5xx answer, a blob's 429 (after `retry_after_s`,
    when the registry said), a blob that missed its digest; not another 4xx.
    """

    def __init__(self, message: str, status: int = 500, retryable: bool = False,
                 retry_after_s: float | None = None):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Reference:
    registry: str    # base URL, e.g. http://127.0.0.1:5000
    repository: str  # e.g. lecture/hello
    tag: str


def parse_reference(ref: str, default_registry: str) -> Reference:
    """Split `[host[:port]/]repo[:tag]`; a ref without a host goes to the default
    registry, as Docker sends it to Docker Hub (or to its configured mirror)."""
    name, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return Reference(f"http://{first}", rest, tag)
    return Reference(default_registry, name, tag)


def familiar_name(name: str) -> str:
    """An image name as `docker images` shows it: the docker CLI sends fully
    qualified names (`docker.io/library/hello`, `docker.io/lecture/hello`) and
    dockerd stores and shows the familiar ones (`hello`, `lecture/hello`).
    docksim sends a name without a host to its default registry, as dockerd
    sends it to Docker Hub, so both forms name one image."""
    first, _, rest = name.partition("/")
    if rest and first in DOCKER_HUB_HOSTS:
        name = rest
    elif rest and ("." in first or ":" in first or first == "localhost"):
        return name  # another registry: the name stays as it is
    if name.startswith("library/") and name.count("/") == 1:
        name = name[len("library/"):]
    return name


def error_text(body: bytes) -> str:
    """The message of an OCI error body, or the raw start of the body."""
    try:
        errors = json.loads(body)["errors"]
        return "; ".join(f"{e.get('code', '').lower().replace('_', ' ')}: {e.get('message', '')}"
                         for e in errors)
    except (ValueError, KeyError, TypeError, AttributeError):
        return body[:200].decode(errors="replace")


def check_digest(data: bytes, digest: str, what: str) -> None:
    if f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
        raise PullError(f"{what}: content does not match digest {digest}")


def _retry_after_s(value: str | None) -> float | None:
    """A Retry-After header in seconds: delta-seconds (docksim's registry may send
    a fraction) or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _connection(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PullError(f"registry {url!r}: not an http(s) URL")
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=TIMEOUT_S)
    return http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=TIMEOUT_S)


class RegistryClient:
    """One kept-alive HTTP connection to a registry, for one repository's pull."""

    def __init__(self, base_url: str, repository: str = "", tokens: TokenSource | None = None):
        self.base_url = base_url.rstrip("/")
        self.repository = repository
        self.tokens = tokens or TokenSource()
        self.conn = _connection(self.base_url)
        self._side: http.client.HTTPConnection | None = None  # a redirect's connection
        self._challenge: dict[str, str] | None = None
        self._auth: dict[str, str] = {}

    def sibling(self) -> "RegistryClient":
        """A client on a connection of its own that already carries this one's
        token, as dockerd's parallel layer downloads share the pull's auth."""
        other = RegistryClient(self.base_url, self.repository, self.tokens)
        other._challenge, other._auth = self._challenge, dict(self._auth)
        return other

    def set_timeout(self, seconds: float) -> None:
        """How long a read may wait for the registry's next byte (this connection)."""
        self.conn.timeout = seconds
        if self.conn.sock is not None:
            self.conn.sock.settimeout(seconds)

    def close(self) -> None:
        self.conn.close()
        if self._side is not None:
            self._side.close()

    def _send(self, path: str, headers: dict[str, str], method: str = "GET") -> http.client.HTTPResponse:
        try:
            self.conn.request(method, path, headers={**headers, **self._auth})
            return self.conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            raise PullError(f"{self.base_url}{path}: {exc}", retryable=True) from None

    def _authorize(self, resp: http.client.HTTPResponse, scope: str) -> bool:
        """After a 401: get a token for the challenge; False if there is none to get."""
        scheme, challenge = parse_challenge(resp.getheader("WWW-Authenticate", ""))
        if scheme != "bearer" or "realm" not in challenge:
            return False
        if self._challenge is not None and self._auth:  # the token we sent was refused
            self.tokens.forget(self._challenge, self._challenge.get("scope") or scope)
        self._challenge = challenge
        try:
            token = self.tokens.token(challenge, challenge.get("scope") or scope)
        except AuthError as exc:
            raise PullError(str(exc)) from None
        self._auth = {"Authorization": f"Bearer {token}"}
        return True

    def request(self, path: str, accept: str = "", headers: dict[str, str] | None = None,
                method: str = "GET") -> http.client.HTTPResponse:
        """Send one request; on a Bearer challenge fetch a token and send it again."""
        headers = dict(headers or {})
        if accept:
            headers["Accept"] = accept
        resp = self._send(path, headers, method)
        if resp.status == 401:
            resp.read()
            scope = pull_scope(self.repository) if self.repository else ""
            if self._authorize(resp, scope):
                resp = self._send(path, headers, method)
        return resp

    def get(self, path: str, accept: str = "", what: str = "") -> tuple[bytes, str]:
        """GET a small document; return its bytes and content type."""
        resp = self.request(path, accept)
        try:
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            raise PullError(f"{what or path}: {exc}", retryable=True) from None
        if resp.status != 200:
            raise PullError(self._refusal(what or path, resp.status, body),
                            404 if resp.status == 404 else 500, resp.status >= 500)
        return body, resp.getheader("Content-Type", "")

    @staticmethod
    def _refusal(what: str, status: int, body: bytes) -> str:
        if status == 401:
            return f"{what}: unauthorized: authentication required (docksim has no docker login)"
        return f"{what}: {status} {error_text(body)}"

    def probe(self) -> None:
        """`GET /v2/`: is this a registry that speaks the distribution API?  With a
        Bearer challenge, fetch the pull token for the repository at once (dockerd)."""
        resp = self._send("/v2/", {})
        resp.read()
        if resp.status == 401 and self.repository:
            self._authorize(resp, pull_scope(self.repository))
        elif resp.status != 200:
            raise PullError(f"{self.base_url} does not answer the /v2/ API ({resp.status})",
                            retryable=resp.status >= 500)

    def open_blob(self, digest: str, offset: int = 0) -> http.client.HTTPResponse:
        """Start a blob GET (from byte `offset`, by Range); the caller reads the body.

        Returns a response with status 200 or 206; PullError otherwise, retryable
        for a lost connection, a 5xx answer or a 429 (with its Retry-After)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self.request(f"/v2/{self.repository}/blobs/{digest}", headers=headers)
        if resp.status in _REDIRECTS and resp.getheader("Location"):
            resp.read()
            resp = self._follow(resp.getheader("Location"), headers)
        if resp.status not in (200, 206):
            body = resp.read()
            if resp.status == 401:
                raise PullError(self._refusal("GET", resp.status, body))
            retry_after_s = _retry_after_s(resp.getheader("Retry-After")) if resp.status == 429 else None
            wait = f", Retry-After {retry_after_s:g} s" if retry_after_s is not None else ""
            raise PullError(f"GET answered {resp.status} {resp.reason} ({error_text(body)}){wait}",
                            retryable=resp.status >= 500 or resp.status == 429,
                            retry_after_s=retry_after_s)
        return resp

    def _follow(self, location: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        """One redirect, to a URL of its own (without our Authorization header)."""
        if location.startswith("/"):
            location = self.base_url + location
        parts = urlsplit(location)
        other = _connection(location)
        other.timeout = self.conn.timeout  # the blob's read timeout, on the redirect's connection too
        try:
            other.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                          headers=headers)
            resp = other.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            other.close()
            raise PullError(f"{location}: {exc}", retryable=True) from None
        if self._side is not None:
            self._side.close()
        self._side = other
        return resp
