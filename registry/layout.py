"""The registry's storage on disk, shared by the image builder and the server.

A real registry (CNCF distribution) keeps every blob once, addressed by its
digest, and keeps per-repository links from tags to manifest digests.  docksim
keeps the same two ideas in the plainest possible tree:

    ROOT/blobs/sha256/<hex>                    every blob: layers, configs, manifests
    ROOT/repositories/<name>/tags/<tag>        text: the manifest digest it points to
    ROOT/uploads/<session>                     a push's blob while it arrives (emptied at start)

Blobs are shared by all repositories (as if every blob were cross-mounted).
Every write goes to a temporary file in the target directory (or, for pushed
blobs, in `uploads/`, on the same file system) and is renamed into place after
its digest was checked, so a reader (the server) never sees half a file.

Names, tags and digests are checked against the OCI distribution grammar before
they become paths; the grammar admits no `..` and no absolute paths, and the
resolved path is checked to stay under the root as a second fence.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

# OCI distribution spec: a repository name is path components of lowercase
# alphanumerics joined by `.`, `_`, `__` or dashes; a tag is at most 128 chars.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
NAME_MAX_CHARS = 255
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
# Any well-formed digest (algorithm:encoded); only sha256 is supported here.
DIGEST_GRAMMAR_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
SHA256_RE = re.compile(r"^sha256:([a-f0-9]{64})$")
_TEMP_PREFIX = ".tmp-"


def valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX_CHARS and NAME_RE.match(name) is not None


def valid_tag(tag: str) -> bool:
    return TAG_RE.match(tag) is not None


def valid_digest(digest: str) -> bool:
    """True for `sha256:<64 lowercase hex>`, the only algorithm served."""
    return SHA256_RE.match(digest) is not None


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


class RegistryLayout:
    """Paths and small reads/writes under one registry root."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.blob_dir = self.root / "blobs" / "sha256"
        self.repo_dir = self.root / "repositories"
        self.upload_dir = self.root / "uploads"

    def ensure(self) -> None:
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.repo_dir.mkdir(parents=True, exist_ok=True)

    def ensure_repository(self, name: str) -> None:
        """Make `name` a repository (a push creates it with its first blob)."""
        (self.repository_path(name) / "tags").mkdir(parents=True, exist_ok=True)

    # -- paths (callers validate first; these refuse anything unvalidated) --

    def _inside(self, path: Path) -> Path:
        # Second fence: even a validated name must not resolve outside the root
        # (for example through a symlink someone planted in the tree).
        if not path.resolve().is_relative_to(self.root):
            raise ValueError(f"{path} lies outside the registry root")
        return path

    def blob_path(self, digest: str) -> Path:
        match = SHA256_RE.match(digest)
        if not match:
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self._inside(self.blob_dir / match.group(1))

    def repository_path(self, name: str) -> Path:
        if not valid_name(name):
            raise ValueError(f"not a repository name: {name!r}")
        return self._inside(self.repo_dir / name)

    def tag_path(self, name: str, tag: str) -> Path:
        if not valid_tag(tag):
            raise ValueError(f"not a tag: {tag!r}")
        return self._inside(self.repository_path(name) / "tags" / tag)

    def new_temp_file(self) -> tuple[int, Path]:
        """An open temporary file beside the blobs (same file system: rename works)."""
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=self.blob_dir)
        return fd, Path(temp)

    # -- writes --

    def put_blob(self, data: bytes) -> str:
        """Store `data` as a blob; return its digest.  Existing blobs are kept."""
        digest = sha256_digest(data)
        path = self.blob_path(digest)
        if not path.exists():
            write_atomic(path, data)
        return digest

    def adopt_blob(self, temp: Path, digest: str) -> Path:
        """Move a finished temporary file into place under its digest."""
        path = self.blob_path(digest)
        os.replace(temp, path)
        return path

    def commit_blob(self, temp: Path, digest: str) -> Path:
        """Rename a verified upload into place; an existing blob is the same bytes
        (same digest), so whichever of two concurrent pushes renames last wins."""
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        path = self.blob_path(digest)
        os.replace(temp, path)
        return path

    def set_tag(self, name: str, tag: str, digest: str) -> None:
        if not valid_digest(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        write_atomic(self.tag_path(name, tag), digest.encode("ascii") + b"\n")

    # -- reads --

    def has_repository(self, name: str) -> bool:
        return (self.repository_path(name) / "tags").is_dir()

    def resolve_tag(self, name: str, tag: str) -> str | None:
        """The manifest digest a tag points to, or None."""
        try:
            text = self.tag_path(name, tag).read_text(encoding="ascii").strip()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        return text if valid_digest(text) else None

    def tags(self, name: str) -> list[str]:
        tag_dir = self.repository_path(name) / "tags"
        return sorted(entry.name for entry in tag_dir.iterdir()
                      if entry.is_file() and valid_tag(entry.name))

    def repositories(self) -> list[str]:
        """Every repository name: each directory holding a `tags` directory."""
        names = []
        if not self.repo_dir.is_dir():
            return names
        for dirpath, dirnames, _ in os.walk(self.repo_dir):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            if "tags" in dirnames:
                name = Path(dirpath).relative_to(self.repo_dir).as_posix()
                if valid_name(name):
                    names.append(name)
        return sorted(names)
