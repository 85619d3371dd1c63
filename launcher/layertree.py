"""An unpacked layer's content, and whether it still is what its blob says.

Docker's layer store can prove a ``diff`` directory against its diff_id because
it keeps tar-split metadata to rebuild the exact tar.  docksim keeps the verified
compressed blob instead (as containerd's content store does), so ``check`` proves
a layer the other way round: it unpacks the blob again, with the same unpacker,
into a scratch directory and compares the two trees entry by entry.  An entry is
its kind, mode, owner, modification time and content (bytes of a file, target of
a symlink, device numbers of a whiteout, the overlay opaque marker of a
directory), so a file that a crash cut short, a flipped byte or a missing entry
all show up.  Hard links show up as equal files.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from launcher.decompress import BrokenData, TarStream
from launcher.manifest import layer_compression
from launcher.unpack import OPAQUE_XATTR, LayerError, unpack_layer

_READ_BYTES = 1 << 20
Entry = tuple


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(_READ_BYTES):
            h.update(chunk)
    return h.hexdigest()


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def tree_entries(top: Path) -> dict[str, Entry]:
    """Every entry below ``top`` (not ``top`` itself), by relative path."""
    entries: dict[str, Entry] = {}
    base = os.fspath(top)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            mode = st.st_mode
            common = (stat.S_IMODE(mode), st.st_uid, st.st_gid)
            if stat.S_ISDIR(mode):
                entry = ("dir", *common, st.st_mtime_ns, _opaque(path))
            elif stat.S_ISREG(mode):
                entry = ("file", *common, st.st_mtime_ns, st.st_size, _file_digest(path))
            elif stat.S_ISLNK(mode):
                entry = ("symlink", st.st_uid, st.st_gid, st.st_mtime_ns, os.readlink(path))
            elif stat.S_ISCHR(mode):
                entry = ("chardev", *common, os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                entry = ("other", mode)
            entries[os.path.relpath(path, base)] = entry
    return entries


def unpack_blob(blob: Path, media_type: str, dest: Path) -> str:
    """Unpack a layer blob into the empty ``dest``; returns the diff_id of its
    uncompressed content.  ``LayerError`` if the blob does not unpack."""
    with open(blob, "rb") as f:
        head = f.read(4)
        f.seek(0)
        tar = TarStream(f.read, layer_compression(media_type, head))
        try:
            unpack_layer(tar.read_chunk, dest)
            tar.drain()
        except BrokenData as exc:
            raise LayerError(f"broken compressed data: {exc}") from None
    return tar.diff_id


def differences(expected: dict[str, Entry], actual: dict[str, Entry], limit: int = 3) -> list[str]:
    """Up to ``limit`` descriptions of how ``actual`` differs from ``expected``."""
    out = []
    for path in sorted(expected.keys() | actual.keys()):
        if path not in actual:
            out.append(f"{path} missing")
        elif path not in expected:
            out.append(f"{path} should not be there")
        elif expected[path] != actual[path]:
            out.append(f"{path} changed")
        if len(out) >= limit:
            break
    return out


def verify_layer(diff: Path, blob: Path, media_type: str, diff_id: str,
                 scratch_parent: Path | None) -> list[str]:
    """What is wrong with the unpacked layer ``diff`` compared with its ``blob``:
    an empty list when the blob's content has digest ``diff_id`` and unpacks to
    exactly the tree in ``diff``.  Unpacks into a scratch dir below
    ``scratch_parent`` (None: the system's temp dir), removed again."""
    scratch = Path(tempfile.mkdtemp(dir=scratch_parent, prefix="check-"))
    try:
        try:
            got = unpack_blob(blob, media_type, scratch)
        except (LayerError, OSError, ValueError) as exc:
            return [f"its blob does not unpack: {exc}"]
        if got != diff_id:
            return [f"its blob's content has digest {got}, not its diff_id"]
        diffs = differences(tree_entries(scratch), tree_entries(diff))
        return [f"content differs from its blob: {', '.join(diffs)}"] if diffs else []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
