"""Registry token auth on the client side, as dockerd does it for `docker pull`.

The flow (distribution's "Token Authentication Specification"):

1. a request to the registry is answered 401 with
   ``WWW-Authenticate: Bearer realm="https://auth.example/token",service="reg",scope="repository:lib/x:pull"``;
2. the client asks the realm for a token: ``GET <realm>?service=reg&scope=repository:lib/x:pull``
   (anonymously here: docksim has no `docker login`), and gets
   ``{"token": "...", "expires_in": 300}`` (`access_token` is the OAuth2 name of the same);
3. it sends the request again with ``Authorization: Bearer <token>``, and every
   later request of the pull too, until the token expires.

dockerd learns the challenge from its `GET /v2/` probe and fetches a token for
``repository:<name>:pull`` before asking for the manifest; so does docksim.
Tokens are cached per (realm, service, scope) for their lifetime.
"""
from __future__ import annotations

import http.client
import json
import re
import threading
import time
from urllib.parse import urlencode, urlsplit

DEFAULT_EXPIRES_S = 60   # the spec's default when the answer has no expires_in
EARLY_S = 5              # renew a little before the registry would refuse
TIMEOUT_S = 30
_PARAM = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


class AuthError(Exception):
    """The registry wants credentials docksim cannot get; the text says why."""


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="x",service="y"` -> ("bearer", {"realm": "x", "service": "y"})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if not match or match.end() == pos:
            break
        quoted, bare = match.group(2), match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        pos = match.end()
    return scheme.lower(), params


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


class TokenSource:
    """Fetches and caches bearer tokens; shared by every connection of a daemon."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}

    def token(self, challenge: dict[str, str], scope: str) -> str:
        """A valid token for `scope` from the realm named by `challenge`."""
        realm, service = challenge.get("realm", ""), challenge.get("service", "")
        key = (realm, service, scope)
        with self._lock:
            cached = self._tokens.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        token, lifetime_s = fetch_token(realm, service, scope)
        with self._lock:
            self._tokens[key] = (token, time.monotonic() + max(0.0, lifetime_s - EARLY_S))
        return token

    def forget(self, challenge: dict[str, str], scope: str) -> None:
        """Drop a token the registry refused (expired or revoked)."""
        with self._lock:
            self._tokens.pop((challenge.get("realm", ""), challenge.get("service", ""), scope), None)


def fetch_token(realm: str, service: str, scope: str) -> tuple[str, float]:
    """GET the realm for an anonymous token: (token, lifetime in seconds)."""
    parts = urlsplit(realm)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AuthError(f"token realm {realm!r} is not an http(s) URL")
    query = urlencode({k: v for k, v in (("service", service), ("scope", scope)) if v})
    path = (parts.path or "/") + "?" + "&".join(q for q in (parts.query, query) if q)
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_class(parts.hostname, parts.port, timeout=TIMEOUT_S)
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise AuthError(f"token realm {realm}: {exc}") from None
    finally:
        conn.close()
    if resp.status != 200:
        raise AuthError(f"token realm {realm} answered {resp.status} for scope {scope!r}")
    try:
        answer = json.loads(body)
        token = answer.get("token") or answer.get("access_token")
        lifetime_s = float(answer.get("expires_in") or DEFAULT_EXPIRES_S)
    except (ValueError, AttributeError, TypeError):
        raise AuthError(f"token realm {realm}: the answer is not a token document") from None
    if not isinstance(token, str) or not token:
        raise AuthError(f"token realm {realm}: the answer holds no token")
    return token, lifetime_s
