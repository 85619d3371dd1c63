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
same name: same digest, same bytes.  Sessions idle for `idle_limit_s` are
dropped with their bytes by a reaper thread (CNCF distribution purges old
uploads too, on a timer), and so are all of them when the server stops; a
server starting on a root removes what dead ones left.

`max_blob_bytes` (None: no limit) caps one blob: a chunk that would carry a
session past it is refused with 413 SIZE_INVALID before it is read when its
length is declared, else as soon as the cap is passed, and the session is
dropped, since it could never be finished.
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
REAP_EVERY_MAX_S = 30.0   # the reaper looks at least this often (more often for short limits)
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
    dropped: bool = False   # set under `lock` once finished, cancelled or reaped


class Uploads:
    """The sessions of one registry root."""

    def __init__(self, layout: RegistryLayout, idle_limit_s: float = IDLE_LIMIT_S,
                 max_blob_bytes: int | None = None):
        if not idle_limit_s > 0:
            raise ValueError(f"idle_limit_s must be positive, not {idle_limit_s}")
        if max_blob_bytes is not None and max_blob_bytes < 0:
            raise ValueError(f"max_blob_bytes must not be negative, not {max_blob_bytes}")
        self.layout = layout
        self.idle_limit_s = idle_limit_s
        self.max_blob_bytes = max_blob_bytes
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
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="upload-reaper", daemon=True)
        self._reaper.start()

    def _reap(self) -> None:
        every_s = min(REAP_EVERY_MAX_S, self.idle_limit_s / 4)
        while not self._stop.wait(every_s):
            self._expire()

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
            self._live(session)
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
        """Append the body (caller holds `session.lock`).  On a failed body, roll the
        file and the hash back to the last good offset; past the size cap, drop
        the session."""
        self._live(session)
        declared = body.declared_length
        if declared is not None:
            self._check_size(session, session.offset + declared)
        before, hasher = session.offset, session.sha256.copy()
        try:
            with open(session.path, "r+b") as out:
                out.seek(before)
                while chunk := body.read(READ_BYTES):
                    self._check_size(session, session.offset + len(chunk))
                    out.write(chunk)
                    session.sha256.update(chunk)
                    session.offset += len(chunk)
        except BaseException:
            if not session.dropped:
                os.truncate(session.path, before)
            session.offset, session.sha256 = before, hasher
            raise
        session.touched_s = time.monotonic()  # a long PATCH is activity, not idleness
        return session.offset

    @staticmethod
    def _live(session: Session) -> None:
        if session.dropped:  # reaped or cancelled while this request waited for the lock
            raise UploadError(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry",
                              {"session": session.id})

    def _check_size(self, session: Session, size: int) -> None:
        if self.max_blob_bytes is None or size <= self.max_blob_bytes:
            return
        self._drop(session)
        raise UploadError(413, "SIZE_INVALID", "blob is larger than this registry accepts",
                          {"limit": self.max_blob_bytes, "size_at_least": size})

    def finish(self, session: Session, digest: str, body) -> Path:
        """Append the last chunk (if any), check the digest, commit the blob."""
        with session.lock:
            self._write(session, body)
            actual = "sha256:" + session.sha256.hexdigest()
            if actual != digest:
                self._drop(session)
                raise UploadError(400, "DIGEST_INVALID", "provided digest did not match uploaded content",
                                  {"digest": digest, "actual": actual})
            session.dropped = True
            self._forget(session)
            return self.layout.commit_blob(session.path, digest)

    def cancel(self, session: Session) -> None:
        with session.lock:
            self._drop(session)

    def _drop(self, session: Session) -> None:
        """Forget the session and delete its bytes (caller holds `session.lock`)."""
        session.dropped = True
        self._forget(session)
        session.path.unlink(missing_ok=True)

    def _forget(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.idle_limit_s
        with self._lock:
            stale = [s for s in self._sessions.values() if s.touched_s < cutoff]
        for session in stale:
            if session.lock.acquire(blocking=False):  # busy means not idle
                try:
                    if session.touched_s < cutoff:
                        self._drop(session)
                finally:
                    session.lock.release()

    def close(self) -> None:
        """Drop every session (the server is stopping)."""
        self._stop.set()
        self._reaper.join()
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.path.unlink(missing_ok=True)
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._sessions)
