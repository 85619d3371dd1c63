"""What the API hands the server: a status, headers and a body; and OCI error bodies.

Errors are JSON bodies ``{"errors": [{"code", "message", "detail"}, ...]}`` with
the distribution spec's status codes; a manifest push may carry several errors
at once (one per missing blob).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

JSON = "application/json"


@dataclass
class Response:
    """A status, headers and a body: bytes, or a byte range of a file."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    file: Path | None = None
    offset: int = 0
    length: int = 0

    @property
    def body_bytes(self) -> int:
        return self.length if self.file is not None else len(self.body)


class RegistryError(Exception):
    """An OCI error: becomes a JSON error body with `status` (and `headers`)."""

    def __init__(self, status: int, code: str, message: str, detail: object = None,
                 headers: dict[str, str] | None = None,
                 more: list[tuple[str, str, object]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail
        self.headers = headers or {}
        self.more = more or []

    def response(self) -> Response:
        errors = [{"code": self.code, "message": self.message, "detail": self.detail}]
        errors += [{"code": c, "message": m, "detail": d} for c, m, d in self.more]
        return json_response(self.status, {"errors": errors}, self.headers)


def json_response(status: int, document: object, headers: dict[str, str] | None = None) -> Response:
    return Response(status, {"Content-Type": JSON, **(headers or {})}, json.dumps(document).encode())
