"""Blob upload sessions: the push half of the OCI distribution API, without HTTP.

A push sends each blob through a session (distribution spec, "Pushing blobs"):

    POST   /v2/<name>/blobs/uploads/            -> a session, 202 + Location
    PATCH  <location>  (Content-Range: a-b)     -> a chunk appended, 202 + Range: 0-<last>
    PUT    <location>?digest=sha256:...         -> (last chunk,) checked, committed: 201
    GET    <location>                           -> 204 + Range: how much has arrived
    DELETE <location>                           -> abandoned, bytes dropped

The bytes go to `ROOT/uploads/<server>/<session>` and are hashed as they arrive.  The
blob appears under `blobs/` only by an atomic rename after its digest matched,
so an abandoned or failed session leaves nothing a client could pull.  Two
pushes of the same blob each write their own file and both rename it onto the
same name: same digest, same bytes.  Sessions idle for `IDLE_LIMIT_S` are
dropped (CNCF distribution purges old uploads too), and so are all of them when
the server stops; a server starting on a root removes what dead ones left.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from registry.layout import RegistryLayout

IDLE_LIMIT_S = 600.0
SESSION_RE = re.compile(r"^[0-9a-f]{32}$")
READ_BYTES = 1 << 20


class UploadError(Exception):
    """An upload request that is refused: status, OCI error code, message."""

    def __init__(self, status: int, code: str, message: str, detail: object = None):
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail


@dataclass
class Session:
    id: str
    name: str
    path: Path
    offset: int = 0
    sha256: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    touched_s: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Uploads:
    """The sessions of one registry root."""

    def __init__(self, layout: RegistryLayout):
        self.layout = layout
        layout.upload_dir.mkdir(parents=True, exist_ok=True)
        for old in layout.upload_dir.iterdir():  # of servers no longer running
            pid = old.name.split("-", 1)[0]
            if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
                shutil.rmtree(old, ignore_errors=True)
        # one directory per server: several may serve one root (a test's fast and slow link)
        self.directory = layout.upload_dir / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.directory.mkdir()
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def start(self, name: str) -> Session:
        self._expire()
        self.layout.ensure_repository(name)
        session = Session(uuid.uuid4().hex, name, Path())
        session.path = self.directory / session.id
        session.path.touch(mode=0o600)
        with self._lock:
            self._sessions[session.id] = session
        return session

    def get(self, name: str, session_id: str) -> Session:
        with self._lock:
            session = self._sessions.get(session_id) if SESSION_RE.match(session_id) else None
        if session is None or session.name != name:
            raise UploadError(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry",
                              {"session": session_id})
        session.touched_s = time.monotonic()
        return session

    def append(self, session: Session, body, content_range: str | None) -> int:
        """Add a chunk at the session's offset; returns the new offset.  A chunk
        that does not start where the last one ended is 416, per the spec."""
        with session.lock:
            if content_range:
                match = re.fullmatch(r"(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?", content_range.strip())
                if not match or int(match.group(1)) != session.offset:
                    raise UploadError(416, "BLOB_UPLOAD_INVALID", "chunk is out of order",
                                      {"content_range": content_range, "offset": session.offset})
                length = int(match.group(2)) - int(match.group(1)) + 1
                declared = body.declared_length
                if declared is not None and declared != length:
                    raise UploadError(416, "BLOB_UPLOAD_INVALID",
                                      "Content-Range and Content-Length disagree",
                                      {"content_range": content_range, "content_length": declared})
            return self._write(session, body)

    def _write(self, session: Session, body) -> int:
        # On a failed body, roll the file and the hash back to the last good offset.
        before, hasher = session.offset, session.sha256.copy()
        try:
            with open(session.path, "r+b") as out:
                out.seek(before)
                while chunk := body.read(READ_BYTES):
                    out.write(chunk)
                    session.sha256.update(chunk)
                    session.offset += len(chunk)
        except BaseException:
            os.truncate(session.path, before)
            session.offset, session.sha256 = before, hasher
            raise
        return session.offset

    def finish(self, session: Session, digest: str, body) -> Path:
        """Append the last chunk (if any), check the digest, commit the blob."""
        with session.lock:
            self._write(session, body)
            actual = "sha256:" + session.sha256.hexdigest()
            self._forget(session)
            if actual != digest:
                session.path.unlink(missing_ok=True)
                raise UploadError(400, "DIGEST_INVALID", "provided digest did not match uploaded content",
                                  {"digest": digest, "actual": actual})
            return self.layout.commit_blob(session.path, digest)

    def cancel(self, session: Session) -> None:
        with session.lock:
            self._forget(session)
            session.path.unlink(missing_ok=True)

    def _forget(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)

    def _expire(self) -> None:
        cutoff = time.monotonic() - IDLE_LIMIT_S
        with self._lock:
            stale = [s for s in self._sessions.values() if s.touched_s < cutoff]
        for session in stale:
            if session.lock.acquire(blocking=False):
                try:
                    self._forget(session)
                    session.path.unlink(missing_ok=True)
                finally:
                    session.lock.release()

    def close(self) -> None:
        """Drop every session (the server is stopping)."""
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.path.unlink(missing_ok=True)
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._sessions)
