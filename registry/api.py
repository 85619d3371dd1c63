"""The OCI distribution API: requests in, responses out, no sockets.

What a client such as dockerd, containerd or skopeo sends to pull an image, and
what a registry answers (OCI distribution spec, "Pull" and "Content discovery");
the push routes are in `registry.push`, token auth in `registry.tokens`:

    GET  /v2/                            200 {}: "this is a v2 registry"
    HEAD /v2/<name>/manifests/<ref>      headers only: digest, type, length
    GET  /v2/<name>/manifests/<ref>      the manifest (ref: a tag or a digest)
    GET  /v2/<name>/blobs/<digest>       config or layer bytes; Range allowed
    GET  /v2/<name>/tags/list            {"name", "tags"}; ?n=&last= paginate
    GET  /v2/_catalog                    {"repositories"}; ?n=&last= paginate
    POST/PATCH/PUT/DELETE .../blobs/uploads/...   blob uploads (registry.push)
    PUT  /v2/<name>/manifests/<ref>      a manifest, checked (registry.manifests)

Errors are JSON bodies ``{"errors": [{"code", "message", "detail"}]}`` with the
spec's status codes (`registry.responses`).  The server (registry.server) puts
these responses on the wire and hands request bodies in as streams.
"""
from __future__ import annotations

import json
import re
from typing import Mapping
from urllib.parse import quote

from registry.layout import DIGEST_GRAMMAR_RE, RegistryLayout, valid_digest, valid_name, valid_tag
from registry.manifests import media_type_of
from registry.push import PushHandlers
from registry.responses import RegistryError, Response, json_response
from registry.tokens import TOKEN_PATH, TokenAuth
from registry.uploads import IDLE_LIMIT_S, Uploads

__all__ = ["RegistryAPI", "RegistryError", "Response"]

API_VERSION = "registry/2.0"
OCTET_STREAM = "application/octet-stream"
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")

_UPLOADS = r"^/v2/(?P<name>.+)/blobs/uploads/"
# (methods, path pattern, handler name); the name group is validated by the handler.
ROUTES = [
    (("GET", "HEAD"), re.compile(r"^/v2/?$"), "base"),
    (("GET", "HEAD"), re.compile(r"^/v2/_catalog$"), "catalog"),
    (("GET", "HEAD"), re.compile(r"^/v2/(?P<name>.+)/tags/list$"), "tags_list"),
    (("POST",), re.compile(_UPLOADS + "?$"), "start_upload"),
    (("GET",), re.compile(_UPLOADS + r"(?P<session_id>[^/]+)$"), "upload_status"),
    (("PATCH",), re.compile(_UPLOADS + r"(?P<session_id>[^/]+)$"), "upload_chunk"),
    (("PUT",), re.compile(_UPLOADS + r"(?P<session_id>[^/]+)$"), "finish_upload"),
    (("DELETE",), re.compile(_UPLOADS + r"(?P<session_id>[^/]+)$"), "cancel_upload"),
    (("GET", "HEAD"), re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$"), "manifest"),
    (("PUT",), re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$"), "put_manifest"),
    (("GET", "HEAD"), re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)$"), "blob"),
]
_HOST_RE = re.compile(r"^[A-Za-z0-9.:\[\]-]{1,300}$")


def _page(items: list[str], query: Mapping[str, list[str]], path: str) -> tuple[list[str], dict[str, str]]:
    """Apply `?n=&last=` pagination; a Link header points at the next page."""
    last = query.get("last", [""])[-1]
    if last:
        items = [item for item in items if item > last]
    if "n" not in query:
        return items, {}
    try:
        limit = int(query["n"][-1])
        if limit < 0:
            raise ValueError
    except ValueError:
        raise RegistryError(400, "PAGINATION_NUMBER_INVALID", "n must be a non-negative integer",
                            {"n": query["n"][-1]}) from None
    if len(items) <= limit or limit == 0:
        return items[:limit], {}
    page = items[:limit]
    return page, {"Link": f'<{path}?n={limit}&last={quote(page[-1], safe="/")}>; rel="next"'}


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) of a single `bytes=` range, or None to send everything.

    Malformed and multi-part ranges are ignored (RFC 9110 lets a server answer
    200 with the whole body); an unsatisfiable range raises 416.
    """
    match = _RANGE_RE.match(header.strip()) if header else None
    if not match or not (match.group(1) or match.group(2)):
        return None
    unsatisfiable = RegistryError(416, "RANGE_INVALID", "requested range not satisfiable",
                                  {"range": header, "size": size})
    if not match.group(1):  # "bytes=-N": the last N bytes
        if int(match.group(2)) == 0 or size == 0:
            raise unsatisfiable
        return max(0, size - int(match.group(2))), size - 1
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) else size - 1
    if last < first and match.group(2):
        return None  # "bytes=9-3" is invalid syntax, not an unsatisfiable range
    if first >= size:
        raise unsatisfiable
    return first, min(last, size - 1)


class RegistryAPI(PushHandlers):
    """Answers requests from the blobs and tags under one root.  With `auth`
    (a TokenAuth), every /v2/ request needs a bearer token from GET /token.
    `upload_idle_s` and `max_blob_bytes` go to the upload sessions (`registry.uploads`)."""

    def __init__(self, layout: RegistryLayout, auth: TokenAuth | None = None,
                 upload_idle_s: float = IDLE_LIMIT_S, max_blob_bytes: int | None = None):
        self.layout = layout
        self.auth = auth
        self.uploads = Uploads(layout, upload_idle_s, max_blob_bytes)
        self._media_types: dict[str, str] = {}  # manifest digest -> its mediaType

    def close(self) -> None:
        self.uploads.close()

    def handle(self, method: str, path: str, query: Mapping[str, list[str]],
               headers: Mapping[str, str], body=None) -> Response:
        try:
            if self.auth is not None and path == TOKEN_PATH and method in ("GET", "HEAD"):
                return json_response(200, self.auth.issue(query.get("scope", [])))
            allowed = []
            for methods, pattern, handler in ROUTES:
                match = pattern.match(path)
                if match:
                    if method in methods:
                        if self.auth is not None:
                            self._authorize(method, path, match.groupdict().get("name"), headers)
                        response = getattr(self, handler)(query=query, headers=headers, body=body,
                                                          **match.groupdict())
                        response.headers.setdefault("Docker-Distribution-API-Version", API_VERSION)
                        return response
                    allowed += methods
            if allowed:
                raise RegistryError(405, "UNSUPPORTED", f"{method} is not supported here",
                                    {"allowed": sorted(set(allowed))})
            raise RegistryError(404, "UNSUPPORTED", "no such endpoint", {"path": path})
        except RegistryError as error:
            response = error.response()
            response.headers["Docker-Distribution-API-Version"] = API_VERSION
            return response

    def _authorize(self, method: str, path: str, name: str | None, headers: Mapping[str, str]) -> None:
        """401 with a Bearer challenge unless the request carries a token for its scope."""
        if name is not None:
            actions = "pull" if method in ("GET", "HEAD") else "pull,push"
            scope = f"repository:{name}:{actions}"
        else:
            scope = "registry:catalog:*" if path.startswith("/v2/_catalog") else None
        allowed, error = self.auth.allows(headers.get("Authorization", ""), scope)
        if not allowed:
            host = headers.get("Host", "")
            realm = f"http://{host if _HOST_RE.match(host) else 'localhost'}{TOKEN_PATH}"
            raise RegistryError(401, "UNAUTHORIZED", "authentication required",
                                {"scope": scope} if scope else None,
                                {"WWW-Authenticate": self.auth.challenge(realm, scope, error)})

    # -- checks shared by the handlers --

    def _repository(self, name: str) -> str:
        if not valid_name(name):
            raise RegistryError(400, "NAME_INVALID", "invalid repository name", {"name": name})
        if not self.layout.has_repository(name):
            raise RegistryError(404, "NAME_UNKNOWN", "repository name not known to registry",
                                {"name": name})
        return name

    @staticmethod
    def _digest(digest: str) -> str:
        if not valid_digest(digest):
            reason = "unsupported algorithm" if DIGEST_GRAMMAR_RE.match(digest) else "malformed"
            raise RegistryError(400, "DIGEST_INVALID", f"provided digest is {reason}",
                                {"digest": digest})
        return digest

    # -- handlers --

    def base(self, **_) -> Response:
        return json_response(200, {})

    def catalog(self, query, **_) -> Response:
        names, link = _page(self.layout.repositories(), query, "/v2/_catalog")
        return json_response(200, {"repositories": names}, link)

    def tags_list(self, name, query, **_) -> Response:
        tags, link = _page(self.layout.tags(self._repository(name)), query, f"/v2/{name}/tags/list")
        return json_response(200, {"name": name, "tags": tags}, link)

    def manifest(self, name, reference, **_) -> Response:
        self._repository(name)
        if ":" in reference:
            digest = self._digest(reference)
        elif not valid_tag(reference):
            # A real registry's router matches no route for such a reference: 404.
            raise RegistryError(404, "MANIFEST_UNKNOWN", "not a valid tag or digest",
                                {"name": name, "reference": reference})
        else:
            digest = self.layout.resolve_tag(name, reference)
            if digest is None:
                raise RegistryError(404, "MANIFEST_UNKNOWN", "manifest unknown",
                                    {"name": name, "tag": reference})
        path = self.layout.blob_path(digest)
        try:
            body = path.read_bytes()
            media_type = self._media_type(digest, body)
        except (FileNotFoundError, ValueError):
            raise RegistryError(404, "MANIFEST_UNKNOWN", "manifest unknown",
                                {"name": name, "reference": reference}) from None
        return Response(200, {"Content-Type": media_type, "Docker-Content-Digest": digest,
                              "ETag": f'"{digest}"'}, body)

    def _media_type(self, digest: str, body: bytes) -> str:
        """The manifest's own mediaType; ValueError when the blob is no manifest."""
        if digest not in self._media_types:
            document = json.loads(body)
            if not isinstance(document, dict) or "schemaVersion" not in document:
                raise ValueError("not a manifest")
            self._media_types[digest] = media_type_of(document)
        return self._media_types[digest]

    def blob(self, name, digest, headers, **_) -> Response:
        self._repository(name)
        path = self.layout.blob_path(self._digest(digest))
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise RegistryError(404, "BLOB_UNKNOWN", "blob unknown to registry",
                                {"name": name, "digest": digest}) from None
        common = {"Content-Type": OCTET_STREAM, "Docker-Content-Digest": digest,
                  "Accept-Ranges": "bytes", "ETag": f'"{digest}"'}
        try:
            wanted = _byte_range(headers.get("Range"), size)
        except RegistryError as error:
            response = error.response()
            response.headers["Content-Range"] = f"bytes */{size}"
            return response
        if wanted is None:
            return Response(200, common, file=path, offset=0, length=size)
        first, last = wanted
        return Response(206, {**common, "Content-Range": f"bytes {first}-{last}/{size}"},
                        file=path, offset=first, length=last - first + 1)
