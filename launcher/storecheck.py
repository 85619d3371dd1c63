"""`check`: is every piece of a store what its name says, and can what uses it rely on it?

A crash, a full disk or a flipped bit on disk can leave a store that a daemon
would trust blindly: dockerd has no such command (its layers are trusted once
registered; `docker image prune` and a re-pull are the remedies), containerd has
`ctr content verify`-like checks of blobs against their digests.  `check` does
both halves for docksim's store (layout in ``launcher.store``):

* every blob's content has the digest it is named after;
* every layer is committed (``meta.json`` present and naming the layer's
  diff_id, ``diff/`` present), its blob is there and verified, and with
  ``content=True`` (the default) its blob unpacks again to exactly the tree in
  ``diff/`` with the right diff_id (``launcher.layertree``);
* every image record's config and manifest blobs are present and verified and
  every layer it lists is present and verified; every tag names a record;
* ``tmp/`` is empty: anything there is what an interrupted daemon left in flight
  (partial downloads, half-extracted layers), never used, removed at the next start.

Each problem is one line.  With ``repair=True`` what is corrupt is removed, and
with it every image that depends on it and every tag of such an image, so that
the next pull fetches it again ("Already exists" only for what is sound).  A
layer that a mounted overlay (a container) still uses is reported, not removed.
Repairs need the daemon stopped (the caller takes the store's lock).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from launcher import linux
from launcher.layertree import verify_layer
from launcher.storefiles import write_json

_HEX_RE = re.compile(r"[0-9a-f]{64}")
_READ_BYTES = 1 << 20
STORE_DIRS = ("blobs/sha256", "layers/sha256", "images", "containers")


class NotAStore(Exception):
    """The directory is not a docksim store (bad input: exit status 2)."""


@dataclass
class Problem:
    what: str       # "blob sha256:…", "layer sha256:…", "image sha256:…", "tag x:1", "tmp"
    message: str
    repaired: bool = False

    def line(self) -> str:
        return f"{self.what}: {self.message}" + (" (repaired)" if self.repaired else "")


@dataclass
class CheckReport:
    blobs: int = 0
    layers: int = 0
    images: int = 0
    tags: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def unrepaired(self) -> list[Problem]:
        return [p for p in self.problems if not p.repaired]

    def summary(self) -> str:
        repaired = len(self.problems) - len(self.unrepaired)
        return (f"checked {self.blobs} blobs, {self.layers} layers, {self.images} images, "
                f"{self.tags} tags: {len(self.problems)} problems"
                + (f", {repaired} repaired" if repaired else ""))


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(_READ_BYTES):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _mounted_lowerdirs() -> set[str]:
    dirs: set[str] = set()
    for _, fstype, opts in linux.mount_table():
        if fstype == "overlay":
            for opt in opts.split(","):
                if opt.startswith("lowerdir="):
                    dirs.update(opt[len("lowerdir="):].split(":"))
    return dirs


class _Checker:
    def __init__(self, root: Path, repair: bool, content: bool):
        self.root, self.repair, self.content = root, repair, content
        self.tmp = root / "tmp"
        self.report = CheckReport()
        self.good_blobs: set[str] = set()
        self.good_layers: set[str] = set()

    def problem(self, what: str, message: str, fix=None) -> None:
        """Record a problem; with repair on, ``fix()`` removes its cause."""
        repaired = False
        if self.repair and fix is not None:
            repaired = fix() is not False
        self.report.problems.append(Problem(what, message, repaired))

    def _discard(self, path: Path) -> None:
        """Make a file or dir vanish atomically (into tmp), then delete it."""
        doomed = Path(tempfile.mkdtemp(dir=self.tmp, prefix="rm-"))
        os.rename(path, doomed / "x")
        shutil.rmtree(doomed)

    # -- the parts, in dependency order -------------------------------------------

    def tmp_leftovers(self) -> None:
        left = sorted(os.listdir(self.tmp)) if self.tmp.is_dir() else []
        if left:
            def fix():
                for name in left:
                    path = self.tmp / name
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            self.problem("tmp", f"{len(left)} leftovers of an interrupted daemon (partial "
                         f"downloads or half-extracted layers, never used): "
                         f"{', '.join(left[:5])}{' ...' if len(left) > 5 else ''}", fix)

    def blobs(self) -> None:
        for path in sorted((self.root / "blobs/sha256").iterdir()):
            self.report.blobs += 1
            digest = "sha256:" + path.name
            if not _HEX_RE.fullmatch(path.name) or not path.is_file() or path.is_symlink():
                self.problem(f"blob {path.name}", "not a blob (a stray entry)",
                             lambda path=path: self._discard(path))
                continue
            try:
                actual = _sha256_file(path)
            except OSError as exc:  # e.g. EIO from a failing disk
                actual = f"unknown ({exc.strerror})"
            if actual != digest:
                self.problem(f"blob {digest}", f"corrupt: its content has digest {actual}",
                             lambda path=path: self._discard(path))
            else:
                self.good_blobs.add(digest)

    def layers(self) -> None:
        in_use = _mounted_lowerdirs()
        for home in sorted((self.root / "layers/sha256").iterdir()):
            self.report.layers += 1
            diff_id = "sha256:" + home.name
            why = self._layer_fault(home, diff_id)
            if not why:
                self.good_layers.add(diff_id)
                continue
            if os.fspath(home / "diff") in in_use:
                self.problem(f"layer {diff_id}", f"{why}; in use by a mounted container, "
                             "not removed (remove the container first)")
            else:
                self.problem(f"layer {diff_id}", why, lambda home=home: self._discard(home))

    def _layer_fault(self, home: Path, diff_id: str) -> str:
        if not _HEX_RE.fullmatch(home.name) or not home.is_dir() or home.is_symlink():
            return "not a layer directory (a stray entry)"
        try:
            meta = json.loads((home / "meta.json").read_text())
        except (OSError, ValueError):
            return "not committed: meta.json missing or unreadable (half-extracted)"
        if not isinstance(meta, dict) or meta.get("diff_id") != diff_id:
            return f"meta.json names diff_id {meta.get('diff_id') if isinstance(meta, dict) else None!r}"
        if not (home / "diff").is_dir():
            return "not committed: diff/ missing"
        blob = meta.get("blob")
        if not isinstance(blob, str) or not blob.startswith("sha256:"):
            return "no blob recorded for it: its content cannot be verified"
        if blob not in self.good_blobs:
            return f"its blob {blob} is missing or corrupt"
        if self.content:
            try:
                faults = verify_layer(home / "diff", self.root / "blobs/sha256" / blob[7:],
                                      str(meta.get("media_type", "")), diff_id,
                                      self.tmp if self.tmp.is_dir() else None)
            except OSError as exc:
                faults = [f"unreadable: {exc}"]
            if faults:
                return "; ".join(faults)
        return ""

    def images(self) -> set[str]:
        """Check every record; returns the ids of the sound ones."""
        sound: set[str] = set()
        for path in sorted((self.root / "images").glob("*.json")):
            if path.name == "refs.json":
                continue
            self.report.images += 1
            image_id = "sha256:" + path.stem
            why = self._image_fault(path, image_id)
            if why:
                self.problem(f"image {image_id}", why, path.unlink)
            else:
                sound.add(image_id)
        return sound

    def _image_fault(self, path: Path, image_id: str) -> str:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return "record unreadable"
        if not isinstance(record, dict) or record.get("id") != image_id:
            return "record does not name this id"
        for what, digest in (("config", record.get("id")),
                             ("manifest", record.get("manifest_digest"))):
            if digest not in self.good_blobs:
                return f"its {what} blob {digest} is missing or corrupt"
        diff_ids = record.get("diff_ids")
        if not isinstance(diff_ids, list):
            return "record lacks diff_ids"
        for diff_id in diff_ids:
            if diff_id not in self.good_layers:
                return f"its layer {diff_id} is missing or corrupt"
        return ""

    def tags(self, sound_images: set[str]) -> None:
        path = self.root / "images/refs.json"
        if not path.exists():
            return
        try:
            refs = json.loads(path.read_text())
            if not isinstance(refs, dict):
                raise ValueError
        except (OSError, ValueError):
            self.problem("tags", "images/refs.json unreadable", path.unlink)
            return
        kept = {}
        for ref, image_id in sorted(refs.items()):
            self.report.tags += 1
            if image_id in sound_images:
                kept[ref] = image_id
            else:
                self.problem(f"tag {ref}", f"names image {image_id}, which is missing or "
                             "corrupt: the next pull fetches it again")
        if self.repair and kept != refs:
            write_json(self.tmp, path, kept, durable=True)
            for p in self.report.problems:
                if p.what.startswith("tag "):
                    p.repaired = True


def check_store(root: Path, repair: bool = False, content: bool = True) -> CheckReport:
    """Check the store at ``root`` (see the module docstring); ``NotAStore`` if it is
    not one.  With ``repair`` the caller must hold the store's lock."""
    root = Path(root)
    if not root.is_dir():
        raise NotAStore(f"{root}: no such directory")
    missing = [d for d in STORE_DIRS if not (root / d).is_dir()]
    if missing:
        raise NotAStore(f"{root} is not a docksim store: no {missing[0]}/")
    checker = _Checker(root.resolve(), repair, content)
    if repair:
        checker.tmp.mkdir(exist_ok=True)
    checker.tmp_leftovers()
    checker.blobs()
    checker.layers()
    checker.tags(checker.images())
    return checker.report
