"""The push half of the OCI distribution API: blob uploads and manifest PUTs.

    POST   /v2/<name>/blobs/uploads/                      202: a session (Location, Docker-Upload-UUID, Range)
    POST   /v2/<name>/blobs/uploads/?digest=<d>           201: a monolithic upload in one request
    POST   /v2/<name>/blobs/uploads/?mount=<d>&from=<r>   201 if the blob is here (cross-repo mount), else 202
    PATCH  /v2/<name>/blobs/uploads/<id>                  202: a chunk (Content-Range: a-b, in order, else 416)
    PUT    /v2/<name>/blobs/uploads/<id>?digest=<d>       201: (last chunk,) digest checked, blob committed
    GET    /v2/<name>/blobs/uploads/<id>                  204: Range says what arrived
    DELETE /v2/<name>/blobs/uploads/<id>                  204: the session and its bytes are dropped
    PUT    /v2/<name>/manifests/<tag or digest>           201: checked by registry.manifests, then stored

Range headers in answers are ``0-<last byte>`` without "bytes=", as CNCF
distribution writes them and as the Docker client parses them.  The sessions
themselves live in `registry.uploads`; this module only speaks HTTP.
"""
from __future__ import annotations

from typing import Mapping

from registry import manifests
from registry.httpbody import BodyError
from registry.layout import sha256_digest, valid_name, valid_tag
from registry.responses import RegistryError, Response
from registry.uploads import Session, UploadError, Uploads


def _session_headers(session: Session) -> dict[str, str]:
    last = max(session.offset - 1, 0)  # distribution's "0-0" for an empty upload
    return {"Location": f"/v2/{session.name}/blobs/uploads/{session.id}",
            "Docker-Upload-UUID": session.id, "Range": f"0-{last}"}


def _created(location: str, digest: str) -> Response:
    return Response(201, {"Location": location, "Docker-Content-Digest": digest})


class PushHandlers:
    """Mixed into RegistryAPI, which provides `layout`, `uploads` and `_digest`."""

    uploads: Uploads

    def _push_name(self, name: str) -> str:
        if not valid_name(name):
            raise RegistryError(400, "NAME_INVALID", "invalid repository name", {"name": name})
        return name

    def _session(self, name: str, session_id: str) -> Session:
        try:
            return self.uploads.get(self._push_name(name), session_id)
        except UploadError as error:
            raise RegistryError(error.status, error.code, error.message, error.detail) from None

    def start_upload(self, name, query: Mapping[str, list[str]], body, **_) -> Response:
        name = self._push_name(name)
        mount, source = query.get("mount", [""])[-1], query.get("from", [""])[-1]
        if mount and source and valid_name(source) and self.layout.has_repository(source):
            digest = self._digest(mount)
            if self.layout.blob_path(digest).is_file():
                self.layout.ensure_repository(name)
                return _created(f"/v2/{name}/blobs/{digest}", digest)
        session = self.uploads.start(name)
        if "digest" in query:  # monolithic: the whole blob in this POST
            return self._finish(session, query, body, None)
        return Response(202, _session_headers(session))

    def upload_status(self, name, session_id, **_) -> Response:
        return Response(204, _session_headers(self._session(name, session_id)))

    def upload_chunk(self, name, session_id, headers, body, **_) -> Response:
        session = self._session(name, session_id)
        try:
            self.uploads.append(session, body, headers.get("Content-Range"))
        except UploadError as error:
            raise RegistryError(error.status, error.code, error.message, error.detail,
                                _session_headers(session)) from None
        except BodyError as error:
            raise RegistryError(400, "BLOB_UPLOAD_INVALID", str(error), {"session": session.id}) from None
        return Response(202, _session_headers(session))

    def finish_upload(self, name, session_id, query, headers, body, **_) -> Response:
        session = self._session(name, session_id)
        return self._finish(session, query, body, headers.get("Content-Range"))

    def _finish(self, session: Session, query, body, content_range: str | None) -> Response:
        digest = query.get("digest", [""])[-1]
        try:
            self._digest(digest)
            if content_range:
                self.uploads.append(session, body, content_range)
            self.uploads.finish(session, digest, body)
        except RegistryError:
            self.uploads.cancel(session)
            raise
        except UploadError as error:
            raise RegistryError(error.status, error.code, error.message, error.detail) from None
        except BodyError as error:
            self.uploads.cancel(session)
            raise RegistryError(400, "BLOB_UPLOAD_INVALID", str(error), {"session": session.id}) from None
        return _created(f"/v2/{session.name}/blobs/{digest}", digest)

    def cancel_upload(self, name, session_id, **_) -> Response:
        self.uploads.cancel(self._session(name, session_id))
        return Response(204)

    def put_manifest(self, name, reference, headers, body, **_) -> Response:
        name = self._push_name(name)
        by_digest = ":" in reference
        if by_digest:
            self._digest(reference)
        elif not valid_tag(reference):
            raise RegistryError(400, "TAG_INVALID", "invalid tag", {"tag": reference})
        try:
            data = body.read_all(manifests.MAX_MANIFEST_BYTES)
        except BodyError as error:
            status, code = (413, "SIZE_INVALID") if "larger" in str(error) else (400, "MANIFEST_INVALID")
            raise RegistryError(status, code, str(error)) from None
        try:
            manifests.check(data, headers.get("Content-Type", ""), self.layout)
        except manifests.ManifestProblem as problem:
            (status, code, message, detail), *more = problem.errors
            raise RegistryError(status, code, message, detail,
                                more=[(c, m, d) for _, c, m, d in more]) from None
        digest = sha256_digest(data)
        if by_digest and digest != reference:
            raise RegistryError(400, "DIGEST_INVALID", "manifest does not match the digest it was put under",
                                {"reference": reference, "digest": digest})
        self.layout.ensure_repository(name)
        self.layout.put_blob(data)
        if not by_digest:
            self.layout.set_tag(name, reference, digest)
        return _created(f"/v2/{name}/manifests/{digest}", digest)
