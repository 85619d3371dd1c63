"""Token auth for the registry, with its own token endpoint: `--auth token`.

Docker Hub and most registries hand out bearer tokens from a separate service
(distribution's "Token Authentication Specification").  In this mode docksim's
registry plays both parts, so the client side of the flow can be exercised:

- a request without a valid token is answered 401 UNAUTHORIZED with
  ``WWW-Authenticate: Bearer realm="http://HOST/token",service="docksim-registry"``
  and, on repository paths, ``scope="repository:<name>:pull"`` (``pull,push``
  for writes);
- ``GET /token?service=...&scope=...`` answers ``{"token", "access_token",
  "expires_in", "issued_at"}``; anyone gets any scope (anonymous access, as on
  Docker Hub's public images): the point is the dance, not secrecy;
- a token is the granted scopes and an expiry, signed with HMAC-SHA256 by a key
  made when the server starts; one whose scope does not cover the request gets
  401 again with ``error="insufficient_scope"``.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time

SERVICE = "docksim-registry"
TOKEN_PATH = "/token"
LIFETIME_S = 300


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_scope(scope: str) -> tuple[str, str, set[str]] | None:
    """`repository:lecture/hello:pull,push` -> ("repository", "lecture/hello", {"pull", "push"})."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return None
    return kind, name, {a for a in actions.split(",") if a}


class TokenAuth:
    """Issues and checks the registry's bearer tokens."""

    def __init__(self, lifetime_s: float = LIFETIME_S):
        self._key = os.urandom(32)
        self.lifetime_s = lifetime_s

    def issue(self, scopes: list[str]) -> dict:
        """The token endpoint's answer for the requested scopes."""
        granted = [s for s in scopes if parse_scope(s)]
        expires = time.time() + self.lifetime_s
        claims = _b64(json.dumps({"scopes": granted, "exp": expires}).encode())
        token = f"{claims}.{_b64(hmac.new(self._key, claims.encode(), hashlib.sha256).digest())}"
        return {"token": token, "access_token": token, "expires_in": int(self.lifetime_s),
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def _claims(self, authorization: str) -> dict | None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or "." not in token:
            return None
        claims, _, signature = token.strip().partition(".")
        expected = _b64(hmac.new(self._key, claims.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(signature, expected):
            return None
        try:
            decoded = json.loads(_unb64(claims))
        except ValueError:
            return None
        if not isinstance(decoded, dict) or float(decoded.get("exp", 0)) < time.time():
            return None
        return decoded

    def allows(self, authorization: str, scope: str | None) -> tuple[bool, str]:
        """(allowed, error) for a request needing `scope` (None: any valid token)."""
        claims = self._claims(authorization) if authorization else None
        if claims is None:
            return False, "invalid_token" if authorization else ""
        if scope is None:
            return True, ""
        kind, name, wanted = parse_scope(scope)
        for granted in claims.get("scopes", []):
            parsed = parse_scope(granted)
            if parsed and parsed[:2] == (kind, name) and (wanted <= parsed[2] or "*" in parsed[2]):
                return True, ""
        return False, "insufficient_scope"

    @staticmethod
    def challenge(realm: str, scope: str | None, error: str = "") -> str:
        parts = [f'realm="{realm}"', f'service="{SERVICE}"']
        if scope:
            parts.append(f'scope="{scope}"')
        if error:
            parts.append(f'error="{error}"')
        return "Bearer " + ",".join(parts)
