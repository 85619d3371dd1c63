"""Where zstd frames end, followed in the compressed bytes as they stream past.

libzstd's streaming reader (python-zstandard's ``stream_reader``) takes an end
of input in the middle of a frame for a clean end: a layer blob cut short
would unpack as a shorter tar.  containerd's decoder reports such a stream
as ``unexpected EOF``; to do the same, this walks the frame layout of RFC 8878
(section 3.1) without decompressing anything: frame header, then blocks (each
a 3-byte header giving its type and size), then the optional 4-byte checksum;
skippable frames carry their own length.  The cost is a few operations per
block of up to 128 KiB.

Bytes that are not zstd at all are left to libzstd to refuse.
"""
from __future__ import annotations

ZSTD_MAGIC = 0xFD2FB528
SKIPPABLE_MASK, SKIPPABLE_MAGIC = 0xFFFFFFF0, 0x184D2A50
_DICT_ID_BYTES = (0, 1, 2, 4)
_RLE_BLOCK = 1


class FrameTracker:
    """Feed it every compressed byte in order; `inside` says whether the input
    so far ends in the middle of a frame."""

    def __init__(self) -> None:
        self._skip = 0              # bytes to pass over before the next header
        self._want = 4              # bytes the next header needs
        self._head = b""            # what has arrived of that header
        self._step = self._magic    # what to do with the header once complete
        self._checksum = False
        self._lost = False          # not zstd: libzstd will say so
        self.inside = False

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end and not self._lost:
            if self._skip:
                take = min(self._skip, end - pos)
                self._skip -= take
                pos += take
                continue
            take = min(self._want - len(self._head), end - pos)
            self._head += data[pos:pos + take]
            pos += take
            if len(self._head) == self._want:
                head, self._head = self._head, b""
                self._step(head)

    @property
    def truncated(self) -> bool:
        """At the end of input: True if it stopped inside a frame."""
        return not self._lost and (self.inside or bool(self._head) or bool(self._skip))

    def _expect(self, n_bytes: int, step) -> None:
        self._want, self._step = n_bytes, step

    def _magic(self, head: bytes) -> None:
        magic = int.from_bytes(head, "little")
        if magic == ZSTD_MAGIC:
            self.inside = True
            self._expect(1, self._descriptor)
        elif magic & SKIPPABLE_MASK == SKIPPABLE_MAGIC:
            self.inside = True
            self._expect(4, self._skippable)
        else:
            self._lost = True

    def _skippable(self, head: bytes) -> None:
        self._skip = int.from_bytes(head, "little")
        self._frame_end()

    def _descriptor(self, head: bytes) -> None:
        flags = head[0]
        single_segment = bool(flags & 0x20)
        self._checksum = bool(flags & 0x04)
        content_size_bytes = (1 if single_segment else 0, 2, 4, 8)[flags >> 6]
        self._skip = (0 if single_segment else 1) + _DICT_ID_BYTES[flags & 3] + content_size_bytes
        self._expect(3, self._block)

    def _block(self, head: bytes) -> None:
        header = int.from_bytes(head, "little")
        last, kind, size = header & 1, (header >> 1) & 3, header >> 3
        self._skip = 1 if kind == _RLE_BLOCK else size
        if not last:
            return  # the next block header follows its content
        if self._checksum:
            self._expect(4, lambda _: self._frame_end())
        else:
            self._frame_end()

    def _frame_end(self) -> None:
        # inside stays True while a skip (a skippable frame's body) is pending
        self.inside = False
        self._expect(4, self._magic)
