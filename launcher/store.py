"""The daemon's content store: blobs, unpacked layers, image records, container dirs.

It mirrors how dockerd (with containerd's content store and the overlay2 snapshotter)
lays out ``/var/lib/docker``:

    root/blobs/sha256/<hex>          verified blobs (manifests, configs, layer tarballs),
                                     like containerd's ``content/blobs/sha256``
    root/layers/sha256/<hex>/diff    one unpacked layer per diff_id, later one overlay
                                     lowerdir (overlay2's ``<id>/diff``)
    root/layers/sha256/<hex>/meta.json
    root/images/                     image records and tags (``launcher.images``)
    root/containers/<id>/            per-container state (upper/work/rootfs)
    root/tmp/                        everything in flight; emptied when a Store opens,
                                     like dockerd's ``tmp`` at start-up (partial
                                     downloads, half-extracted layers, half-deleted dirs)

Anything reaches its final name only by an atomic ``rename`` from ``root/tmp``, so a
crash never leaves a half-written blob, layer or record under its final name (the
rules are in ``launcher.storefiles``); a layer's blob is committed before the
layer, so a registered layer always has its verified blob to be checked against
(``launcher.storecheck``).  All public methods are safe to call from
several threads.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable

from launcher import linux
from launcher.decompress import BrokenData, TarStream, TooLarge
from launcher.images import ImageRecords, normalize_ref
from launcher.manifest import layer_compression
from launcher.storefiles import digest_hex, fsync_dir, fsync_path, write_json
from launcher.unpack import LayerError, unpack_layer

__all__ = ["LayerError", "Store", "normalize_ref"]

log = logging.getLogger(__name__)

CONTAINER_RECORD = "config.v2.json"  # a container's record, as dockerd names it
_CONTAINER_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_READ_CHUNK_BYTES = 1 << 20


def _peeked(read: Callable[[int], bytes]) -> tuple[bytes, Callable[[int], bytes]]:
    """The first bytes of a stream (for magic numbers) and a read that still
    returns them first."""
    head = read(4)
    pending = [head]

    def again(n: int) -> bytes:
        if pending:
            return pending.pop()
        return read(n)
    return head, again


class Store:
    """Content store rooted at ``root``; see the module docstring for the layout.

    ``durable=True`` fsyncs blobs, layers and records before renaming them into place
    (containerd does this on commit); off by default, because renames are already
    atomic against a daemon crash and fsync costs milliseconds per file.
    ``max_layer_bytes`` caps one layer's uncompressed tar (None: no cap, as dockerd);
    a layer past it fails to register, like any other bad layer.
    """

    def __init__(self, root: Path, durable: bool = False,
                 max_layer_bytes: int | None = None) -> None:
        self.root = Path(root).resolve()
        self.durable = durable
        self.max_layer_bytes = max_layer_bytes
        self._tmp = self.root / "tmp"
        self._blobs = self.root / "blobs" / "sha256"
        self._layers = self.root / "layers" / "sha256"
        images = self.root / "images"
        self._containers = self.root / "containers"
        # what a crashed daemon left in flight: never used, since nothing in tmp
        # has a final name; removed before anything else can look at it
        leftovers = sorted(os.listdir(self._tmp)) if self._tmp.is_dir() else []
        shutil.rmtree(self._tmp, ignore_errors=True)
        if leftovers:
            log.info("recovery: removed %d leftovers of an interrupted daemon from %s: %s",
                     len(leftovers), self._tmp, ", ".join(leftovers[:8]))
        for d in (self._tmp, self._blobs, self._layers, images, self._containers):
            d.mkdir(parents=True, exist_ok=True)
        self._images = ImageRecords(images, self._tmp, durable)
        self._lock = threading.Lock()  # the key-lock table
        self._key_locks: dict[str, threading.Lock] = {}

    def _key_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    # -- temp files ----------------------------------------------------------------

    def new_temp(self) -> Path:
        """A new, empty, uniquely named file inside ``root/tmp``."""
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="blob-")
        os.close(fd)
        return Path(name)

    # -- blobs ---------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """Where the blob with this digest lives (whether or not it is there yet)."""
        return self._blobs / digest_hex(digest)

    def has_blob(self, digest: str) -> bool:
        """True if a committed blob with this digest is in the store."""
        return self.blob_path(digest).is_file()

    def commit_blob(self, temp: Path, digest: str) -> Path:
        """Atomically move a verified temp file (from ``new_temp``) to its blob path.

        The caller has checked the digest while streaming, as containerd's content
        writer does before ``Commit``.  Returns the blob path.
        """
        temp = Path(temp).resolve()
        if temp.parent != self._tmp:
            raise ValueError(f"{temp} is not a temp file of this store")
        final = self.blob_path(digest)
        if self.durable:
            fsync_path(temp)
        os.replace(temp, final)
        if self.durable:
            fsync_dir(self._blobs)
        return final

    def put_blob(self, data: bytes, digest: str) -> Path:
        """Store small verified bytes (a manifest, a config) as a blob."""
        final = self.blob_path(digest)
        if not final.is_file():
            temp = self.new_temp()
            temp.write_bytes(data)
            self.commit_blob(temp, digest)
        return final

    # -- layers --------------------------------------------------------------------

    def _layer_home(self, diff_id: str) -> Path:
        return self._layers / digest_hex(diff_id)

    def layer_dir(self, diff_id: str) -> Path:
        """The unpacked layer's directory, usable as one overlay lowerdir."""
        return self._layer_home(diff_id) / "diff"

    def has_layer(self, diff_id: str) -> bool:
        """True if the layer was registered (it appears only by an atomic rename)."""
        return self._layer_home(diff_id).is_dir()

    def layer_size(self, diff_id: str) -> int:
        """Bytes of regular files in a registered layer."""
        meta = json.loads((self._layer_home(diff_id) / "meta.json").read_text())
        return int(meta["size"])

    def register_layer(self, blob_path: Path, diff_id: str, media_type: str) -> int:
        """Unpack a layer blob into the store, checking its diff_id; returns its bytes.

        Mirrors Docker's layer store ``Register``: decompress, hash the uncompressed
        tar (its sha256 must equal ``diff_id``, the config's ``rootfs.diff_ids``
        entry) while unpacking it, then move it into place.  A layer already there is
        not unpacked again ("Already exists").  On any failure nothing stays in the
        store and ``LayerError`` names the layer and the cause.
        """
        self._layer_home(diff_id)  # validates diff_id before the blob is opened
        if self.has_layer(diff_id):
            return self.layer_size(diff_id)
        try:
            blob = open(blob_path, "rb")
        except OSError as exc:
            raise LayerError(f"layer {diff_id}: {exc}") from exc
        with blob:
            return self.register_layer_from(blob.read, diff_id, media_type)

    def register_layer_from(self, read: Callable[[int], bytes], diff_id: str, media_type: str,
                            before_commit: Callable[[], None] | None = None,
                            blob_digest: str | None = None) -> int:
        """``register_layer`` for a blob that is still arriving: ``read(n)`` returns
        its next bytes (b"" at the end) as the pull's network spool does.

        ``before_commit`` runs after the diff_id matched and before the layer takes
        its name: the puller waits there for the blob's own digest, so a layer
        whose bytes turn out wrong is never registered.  Whatever ``read`` or
        ``before_commit`` raise (other than OSError/ValueError) reaches the caller
        unchanged, after the half-unpacked layer was removed.  ``blob_digest``, the
        compressed blob's digest, is recorded in ``meta.json`` for ``check``.
        """
        home = self._layer_home(diff_id)
        with self._key_lock("layer:" + diff_id):
            if home.is_dir():
                return self.layer_size(diff_id)
            work = Path(tempfile.mkdtemp(dir=self._tmp, prefix="layer-"))
            try:
                size = self._unpack_verified(read, diff_id, media_type, work)
                if before_commit is not None:
                    before_commit()
                meta = {"diff_id": diff_id, "size": size, "media_type": media_type}
                if blob_digest is not None:
                    meta["blob"] = blob_digest
                write_json(self._tmp, work / "meta.json", meta, self.durable)
                os.rename(work, home)  # the commit: a layer dir is whole or absent
                if self.durable:
                    fsync_dir(self._layers)
            except LayerError:
                shutil.rmtree(work, ignore_errors=True)
                raise
            except (OSError, ValueError) as exc:  # e.g. ENOSPC, a bad media type
                shutil.rmtree(work, ignore_errors=True)
                raise LayerError(f"layer {diff_id}: {exc}") from exc
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
        log.debug("registered layer %s (%d bytes)", diff_id, size)
        return size

    def _unpack_verified(self, read: Callable[[int], bytes], diff_id: str, media_type: str,
                         work: Path) -> int:
        diff = work / "diff"
        diff.mkdir(mode=0o755)
        head, read = _peeked(read)
        tar = TarStream(read, layer_compression(media_type, head), self.max_layer_bytes)
        try:
            size = unpack_layer(tar.read_chunk, diff)
            tar.drain()
        except BrokenData as exc:  # truncated or corrupt compressed data
            raise LayerError(f"layer {diff_id}: broken compressed data: {exc}") from None
        except TooLarge as exc:
            raise LayerError(f"layer {diff_id}: {exc}") from None
        except LayerError as exc:
            raise LayerError(f"layer {diff_id}: {exc}") from None
        if tar.diff_id != diff_id:
            raise LayerError(f"layer {diff_id}: uncompressed content has digest {tar.diff_id}")
        if self.durable:
            os.sync()  # one call instead of an fsync per unpacked file
        return size

    def remove_layer(self, diff_id: str) -> bool:
        """Delete a registered layer unless a mounted overlay still uses it."""
        home = self._layer_home(diff_id)
        with self._key_lock("layer:" + diff_id):
            if not home.is_dir() or self._layer_in_use(self.layer_dir(diff_id)):
                return False
            doomed = Path(tempfile.mkdtemp(dir=self._tmp, prefix="rm-"))
            os.rename(home, doomed / "layer")  # vanish atomically, then delete
            shutil.rmtree(doomed, ignore_errors=True)
        return True

    @staticmethod
    def _layer_in_use(diff: Path) -> bool:
        needle = os.fspath(diff)
        for _, fstype, opts in linux.mount_table():
            if fstype == "overlay" and any(
                    o.startswith("lowerdir=") and needle in o[9:].split(":")
                    for o in opts.split(",")):
                return True
        return False

    # -- images (records and tags: launcher.images) ----------------------------------

    def put_image(self, ref: str, record: dict) -> None:
        """Store an image record (keyed by ``record['id']``) and tag it ``ref``.

        Like ``docker pull``/``tag``: a ref moves to the new id; the old image
        keeps its record (a dangling image) until removed.
        """
        self._images.put(ref, record)

    def get_image(self, name_or_id: str) -> dict | None:
        """The record for a ref (``lecture/hello:1``), a full id or an id prefix
        of at least 12 hex digits, with ``repo_tags`` filled in; None if unknown."""
        return self._images.get(name_or_id)

    def list_images(self) -> list[dict]:
        """Every image record (one per id, tagged or dangling), sorted by id."""
        return self._images.all()

    def remove_image(self, ref: str) -> dict:
        """Untag ``ref`` (or, given an id, all its tags), like ``docker rmi``.

        When no tag points at the image any more its record is deleted, and so are
        its layers that no other image lists and no mounted overlay uses.  Returns
        the record plus ``untagged`` (refs removed), ``deleted`` (bool) and
        ``removed_layers`` (diff_ids).  Raises ``KeyError`` for an unknown image.
        """
        record, orphans = self._images.untag(ref)
        record["removed_layers"] = [d for d in orphans if self.remove_layer(d)]
        return record

    # -- containers ----------------------------------------------------------------

    def container_dir(self, container_id: str) -> Path:
        """``root/containers/<id>/``, created if needed."""
        if not self.is_container_id(container_id):
            raise ValueError(f"invalid container id {container_id!r}")
        path = self._containers / container_id
        path.mkdir(exist_ok=True)
        return path

    @staticmethod
    def is_container_id(name: str) -> bool:
        """Whether ``name`` could be a container directory's name."""
        return _CONTAINER_ID_RE.fullmatch(name) is not None

    def save_container_record(self, container_id: str, record: dict) -> None:
        """Write ``containers/<id>/config.v2.json`` atomically: dockerd rewrites its
        container's record at every change of state, for a restarted daemon."""
        if not self.is_container_id(container_id):
            raise ValueError(f"invalid container id {container_id!r}")
        write_json(self._tmp, self._containers / container_id / CONTAINER_RECORD, record,
                   self.durable)

    def remove_container_dir(self, container_id: str) -> None:
        """Delete a container's directory; refused while anything is mounted in it
        (deleting through a mounted rootfs would delete image content)."""
        if not self.is_container_id(container_id):
            raise ValueError(f"invalid container id {container_id!r}")
        path = self._containers / container_id
        busy = linux.mounts_under(path)
        if busy:
            raise OSError(16, f"container dir still has mounts: {busy}")
        if path.exists():
            # vanish atomically, then delete: a crash mid-delete leaves its rest in
            # tmp (emptied at the next start), never a half-deleted container dir
            doomed = Path(tempfile.mkdtemp(dir=self._tmp, prefix="rm-"))
            os.rename(path, doomed / "container")
            shutil.rmtree(doomed)
