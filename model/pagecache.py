"""A node's page cache: layer files written by a pull but not yet on disk.

What it models: Linux keeps freshly written file data in memory as dirty pages;
its flusher threads write a page back once it has been dirty for
``vm.dirty_expire_centisecs`` (30 s by default).  A ``syncfs(2)`` instead
writes back everything dirty on the filesystem at once, and its caller waits.

That wait is what a ``docker run`` right after ``docker pull`` pays: dockerd's
overlay2 driver mounts overlayfs without ``volatile``, and overlayfs calls
``syncfs`` on the upper filesystem whenever it is unmounted.  Creating a
container mounts and unmounts its init layer, so the first create after a
pull waits while the pull's layers are written to disk (about 14 ms for a
29 MB image on the reference VM).  docksim's engine mounts with ``volatile``
and never waits (``Costs.unmount_flushes``).
"""
from __future__ import annotations

from collections import deque


class PageCache:
    """Dirty bytes on one node's disk, and who waits for them."""

    def __init__(self, dirty_expire_s: float):
        self.dirty_expire_s = dirty_expire_s
        self._writes: deque[tuple[float, int]] = deque()  # (written at, bytes), oldest first

    def _expire(self, now_s: float) -> None:
        """The flusher writes back what has been dirty for dirty_expire_s; it also
        keeps the record to the last dirty_expire_s of writes, on engines whose
        unmounts never sync too."""
        while self._writes and now_s - self._writes[0][0] >= self.dirty_expire_s:
            self._writes.popleft()

    def write(self, now_s: float, nbytes: int) -> None:
        """`nbytes` of file data were written (a layer extracted) at `now_s`."""
        self._expire(now_s)
        if nbytes > 0:
            self._writes.append((now_s, nbytes))

    def dirty_bytes(self, now_s: float) -> int:
        """Bytes still dirty at `now_s`: the flusher has written back older ones."""
        self._expire(now_s)
        return sum(n for _, n in self._writes)

    def sync(self, now_s: float) -> int:
        """syncfs: every dirty byte is written back now; returns how many there were."""
        nbytes = self.dirty_bytes(now_s)
        self._writes.clear()
        return nbytes
