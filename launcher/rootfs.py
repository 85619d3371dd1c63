"""A container's root filesystem: an overlay mount of the image's layers.

This is overlay2's snapshot for ``docker create``: the image's unpacked layers are
the read-only lowerdirs, ``upper`` takes the container's writes, ``work`` is
overlayfs's scratch space, and ``rootfs`` is where the union appears.  Unmounting
and deleting it is the snapshot removal of ``docker rm``.
"""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from launcher import linux


def mount_rootfs(lower_dirs: list[Path], container_dir: Path) -> Path:
    """Mount overlay(lower_dirs, upper) on ``container_dir/rootfs`` and return it.

    ``lower_dirs`` is bottom-first as in the image config; overlayfs wants the top
    layer first.  Already mounted: returned as is.
    """
    container_dir = Path(container_dir).resolve()
    upper, work, rootfs = (container_dir / n for n in ("upper", "work", "rootfs"))
    if os.fspath(rootfs) in linux.mounts_under(rootfs):
        return rootfs
    lowers = [os.fspath(Path(p).resolve()) for p in reversed(lower_dirs)]
    if not lowers:  # an image with no layers (FROM scratch, nothing added)
        (container_dir / "empty").mkdir(exist_ok=True)
        lowers = [os.fspath(container_dir / "empty")]
    for path in lowers + [os.fspath(upper), os.fspath(work)]:
        if any(c in path for c in ",:\\"):
            raise ValueError(f"overlay cannot take path {path!r}")
    data = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    if len(data) >= 4096:  # mount(2) copies at most one page of options
        raise OSError(errno.E2BIG, f"{len(lowers)} layers: overlay options too long")
    for d in (upper, work, rootfs):
        d.mkdir(exist_ok=True)
    try:
        try:
            # `volatile` skips overlayfs's syncfs of the upper filesystem at
            # unmount.  Without it, removing a container flushes every dirty
            # page of the whole disk (tens to hundreds of ms right after a
            # pull).  dockerd does not set it; docksim can, because a
            # container's writable layer is deleted with the container anyway.
            linux.mount("overlay", rootfs, "overlay", 0, data + ",volatile")
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # kernels before 5.10 lack the option
                raise
            linux.mount("overlay", rootfs, "overlay", 0, data)
    except BaseException:
        _remove_rootfs_dirs(container_dir)
        raise
    return rootfs


def unmount_rootfs(container_dir: Path) -> None:
    """Unmount the rootfs (lazily if busy, as dockerd does) and delete upper/work/
    rootfs.  Safe to call again, or on a container that was never mounted."""
    container_dir = Path(container_dir).resolve()
    rootfs = container_dir / "rootfs"
    for mount_point in reversed(linux.mounts_under(rootfs)):
        try:
            linux.umount2(mount_point)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                linux.umount2(mount_point, linux.MNT_DETACH)
            elif exc.errno != errno.EINVAL:  # EINVAL: already gone
                raise
    left = linux.mounts_under(rootfs)
    if left:  # never delete through a mount: it would delete image content
        raise OSError(errno.EBUSY, f"still mounted: {left}")
    _remove_rootfs_dirs(container_dir)


def _remove_rootfs_dirs(container_dir: Path) -> None:
    for name in ("rootfs", "upper", "work", "empty"):
        shutil.rmtree(container_dir / name, ignore_errors=True)
