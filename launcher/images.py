"""Image records and the tags that name them: Docker's imagedb and reference store.

    images/<hex>.json    one record per image id (dockerd's ``image/overlay2/imagedb``)
    images/refs.json     ref -> image id (dockerd's ``repositories.json``)

A ref is resolved the way the docker CLI and dockerd do it: ``name`` means
``name:latest``, and an image may also be named by its id or an unambiguous id
prefix of at least 12 hex digits.  Re-tagging moves a ref and leaves the old image
dangling; ``docker rmi`` semantics (untag, then delete the record once no tag is
left) are in ``untag``.  The layers themselves belong to ``Store``.
"""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from launcher.storefiles import digest_hex, write_json

_HEX_PREFIX_RE = re.compile(r"(?:sha256:)?([0-9a-f]{12,64})")
_REQUIRED = {"id", "config", "manifest_digest", "diff_ids", "size"}


def normalize_ref(ref: str) -> str:
    """Add ``:latest`` to a ref without tag or digest, as the docker CLI does."""
    last = ref.rsplit("/", 1)[-1]
    if "@" in ref or ":" in last:
        return ref
    return ref + ":latest"


class ImageRecords:
    """The records under ``directory``; files are written through ``tmp_dir`` (see
    ``storefiles``).  All methods are safe to call from several threads."""

    def __init__(self, directory: Path, tmp_dir: Path, durable: bool) -> None:
        self._dir = directory
        self._tmp = tmp_dir
        self._durable = durable
        self._lock = threading.Lock()  # refs.json is read-modify-written

    def _write(self, final: Path, data: object) -> None:
        write_json(self._tmp, final, data, self._durable)

    def _refs(self) -> dict[str, str]:
        try:
            return json.loads((self._dir / "refs.json").read_text())
        except FileNotFoundError:
            return {}

    def _record_path(self, image_id: str) -> Path:
        return self._dir / f"{digest_hex(image_id)}.json"

    def _record(self, image_id: str) -> dict | None:
        try:
            return json.loads(self._record_path(image_id).read_text())
        except FileNotFoundError:
            return None

    def _all_records(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in self._dir.glob("*.json")
                if p.name != "refs.json"]

    @staticmethod
    def _with_tags(record: dict, refs: dict[str, str],
                   matched_ref: str | None = None) -> dict:
        """Fill in ``repo_tags`` and make ``ref`` a tag that names this image now
        (the one asked for, if any), or the id when the image is dangling."""
        tags = sorted(r for r, i in refs.items() if i == record["id"])
        record["repo_tags"] = tags
        if matched_ref is not None:
            record["ref"] = matched_ref
        elif record.get("ref") not in tags:
            record["ref"] = tags[0] if tags else record["id"]
        return record

    def _resolve(self, name_or_id: str, refs: dict[str, str]) -> str | None:
        ref = normalize_ref(name_or_id)
        if ref in refs:
            return refs[ref]
        match = _HEX_PREFIX_RE.fullmatch(name_or_id)
        if not match:
            return None
        prefix = match.group(1)
        ids = [p.stem for p in self._dir.glob(f"{prefix}*.json")
               if len(p.stem) == 64]
        return "sha256:" + ids[0] if len(ids) == 1 else None  # ambiguous: not found

    def put(self, ref: str, record: dict) -> None:
        """Store a record (keyed by ``record['id']``) and point ``ref`` at it."""
        missing = _REQUIRED - set(record)
        if missing:
            raise ValueError(f"image record lacks {sorted(missing)}")
        path = self._record_path(record["id"])  # validates the id first
        with self._lock:
            self._write(path, {k: v for k, v in record.items() if k != "repo_tags"})
            refs = self._refs()
            refs[normalize_ref(ref)] = record["id"]
            self._write(self._dir / "refs.json", refs)

    def get(self, name_or_id: str) -> dict | None:
        """The record for a ref, an id or an id prefix, with ``repo_tags`` filled
        in; None if unknown."""
        with self._lock:
            refs = self._refs()
            image_id = self._resolve(name_or_id, refs)
            record = self._record(image_id) if image_id else None
            if record is None:
                return None
            ref = normalize_ref(name_or_id)
            return self._with_tags(record, refs, ref if ref in refs else None)

    def all(self) -> list[dict]:
        """Every record (one per id, tagged or dangling), sorted by id."""
        with self._lock:
            refs = self._refs()
            return sorted((self._with_tags(r, refs) for r in self._all_records()),
                          key=lambda r: r["id"])

    def untag(self, ref: str) -> tuple[dict, list[str]]:
        """Remove ``ref`` (or, given an id, all its tags); delete the record once no
        tag is left.  Returns the record plus ``untagged``, ``deleted`` and
        ``repo_tags`` (what still names it), and the diff_ids of a deleted image that
        no other record lists, for the caller to remove.  ``KeyError`` if unknown."""
        with self._lock:
            refs = self._refs()
            image_id = self._resolve(ref, refs)
            record = self._record(image_id) if image_id else None
            if record is None:
                raise KeyError(ref)
            if normalize_ref(ref) in refs:
                untagged = [normalize_ref(ref)]
            else:
                untagged = sorted(r for r, i in refs.items() if i == image_id)
            for r in untagged:
                del refs[r]
            self._write(self._dir / "refs.json", refs)
            deleted = image_id not in refs.values()
            orphans: list[str] = []
            if deleted:
                self._record_path(image_id).unlink()
                still_used = {d for r in self._all_records() for d in r["diff_ids"]}
                orphans = [d for d in record["diff_ids"] if d not in still_used]
        record.update(untagged=untagged, deleted=deleted,
                      repo_tags=sorted(r for r, i in refs.items() if i == image_id))
        return record, list(dict.fromkeys(orphans))
