"""The streaming halves of a layer apply: `decompress.TarStream` (gzip members, zstd
frames, bounded output, broken data) and `tarstream.TarReader` through
`unpack_layer` (PAX and GNU long names, chunk boundaries anywhere, sparse files
refused, overlay-form whiteouts accepted, truncation named by entry)."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from launcher.decompress import CHUNK_BYTES, BrokenData, TarStream, TooLarge
from launcher.unpack import LayerError, unpack_layer
from tests.test_unpack import MTIME_S, entry, make_tar

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="unpacking layers needs root")


def reader(data: bytes):
    stream = io.BytesIO(data)
    return stream.read


def inflate(data: bytes, compression: str) -> tuple[bytes, int]:
    """All output of a TarStream and its largest chunk."""
    tar = TarStream(reader(data), compression)
    chunks = []
    while chunk := tar.read_chunk():
        chunks.append(chunk)
    out = b"".join(chunks)
    assert tar.diff_id == "sha256:" + hashlib.sha256(out).hexdigest()
    return out, max((len(c) for c in chunks), default=0)


# -- decompression ------------------------------------------------------------------

PAYLOAD = os.urandom(300_000) + bytes(3_000_000)


@pytest.mark.parametrize("compression, blob", [
    ("gzip", gzip.compress(PAYLOAD)),
    ("gzip", gzip.compress(PAYLOAD[:1000]) + gzip.compress(PAYLOAD[1000:])),  # two members
    ("zstd", zstandard.ZstdCompressor(write_checksum=True).compress(PAYLOAD)),
    ("zstd", b"".join(zstandard.ZstdCompressor().compress(p) for p in (PAYLOAD[:7], PAYLOAD[7:]))),
    ("", PAYLOAD),
])
def test_every_compression_gives_the_stream_back(compression, blob):
    out, largest = inflate(blob, compression)
    assert out == PAYLOAD and largest <= CHUNK_BYTES


def test_output_is_bounded_whatever_the_ratio():
    bomb = gzip.compress(bytes(60_000_000), compresslevel=9)  # 60 MB from ~60 KB
    tar = TarStream(reader(bomb), "gzip")
    assert max(len(tar.read_chunk()) for _ in range(20)) <= CHUNK_BYTES


@pytest.mark.parametrize("compression, blob, reason", [
    ("gzip", gzip.compress(PAYLOAD)[:-20], "truncated"),
    ("gzip", gzip.compress(PAYLOAD) + b"garbage", "not gzip"),
    ("gzip", b"\x1f\x8b\x08\x00" + os.urandom(100), "gzip"),
    ("zstd", zstandard.ZstdCompressor(write_checksum=True).compress(PAYLOAD)[:-1] + b"\x00", "zstd"),
    ("zstd", b"\x28\xb5\x2f\xfd" + os.urandom(100), "zstd"),
])
def test_broken_compressed_data_is_refused(compression, blob, reason):
    with pytest.raises(BrokenData, match=reason):
        inflate(blob, compression)


def test_the_cap_stops_a_bomb_before_passing_it():
    """With `max_bytes`, no chunk that would pass the cap is handed out."""
    bomb = gzip.compress(bytes(60_000_000), compresslevel=1)
    tar = TarStream(reader(bomb), "gzip", max_bytes=5_500_000)
    with pytest.raises(TooLarge, match="limit of 5500000 bytes"):
        while tar.read_chunk():
            pass
    assert 5_500_000 - CHUNK_BYTES < tar.bytes_out <= 5_500_000
    out, _ = inflate(gzip.compress(PAYLOAD), "gzip")  # no cap: the whole stream
    assert len(out) == len(PAYLOAD)


def _zstd_variants() -> dict[str, tuple[bytes, int]]:
    """name -> (blob, where its first frame ends: a cut there is a valid stream)."""
    streamed = io.BytesIO()
    with zstandard.ZstdCompressor(write_checksum=True).stream_writer(streamed, closefd=False) as w:
        for i in range(0, len(PAYLOAD), 70_000):
            w.write(PAYLOAD[i:i + 70_000])
    skippable = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"hello"
    first = zstandard.ZstdCompressor().compress(PAYLOAD[:7])
    whole = zstandard.ZstdCompressor().compress(PAYLOAD)
    return {"checksum": (zstandard.ZstdCompressor(write_checksum=True).compress(PAYLOAD), 0),
            "no checksum": (whole, 0),
            "two frames": (first + zstandard.ZstdCompressor(write_content_size=False).compress(PAYLOAD[7:]),
                           len(first)),
            "skippable frame first": (skippable + whole, len(skippable)),
            "streamed": (streamed.getvalue(), 0)}


@pytest.mark.parametrize("name", list(_zstd_variants()))
def test_zstd_cut_inside_a_frame_is_refused(name):
    """libzstd's stream reader takes a cut for a clean end; the frame tracker does not."""
    blob, boundary = _zstd_variants()[name]
    assert inflate(blob, "zstd")[0] == PAYLOAD
    cuts = {1, 4, 5, 9, 12, boundary - 1, boundary + 1, len(blob) - 4, len(blob) - 1}
    cuts = sorted(c for c in cuts | set(range(13, len(blob), len(blob) // 40))
                  if 0 < c < len(blob) and c != boundary)
    refused = 0
    for cut in cuts:
        with pytest.raises(BrokenData, match="zstd"):
            inflate(blob[:cut], "zstd")
        refused += 1
    print(f"zstd {name}: {refused}/{len(cuts)} cuts refused")
    assert refused == len(cuts)


def test_gzip_trailer_is_checked():
    blob = bytearray(gzip.compress(PAYLOAD))
    blob[-6] ^= 0xFF  # the CRC32
    with pytest.raises(BrokenData):  # zlib checks the trailer itself (wbits=31)
        inflate(bytes(blob), "gzip")


# -- the tar reader, through unpack_layer -----------------------------------------------

def unpack_in_chunks(raw: bytes, dest: Path, size: int) -> int:
    pieces = iter([raw[i:i + size] for i in range(0, len(raw), size)])
    return unpack_layer(lambda: next(pieces, b""), dest)


def snapshot(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            data = Path(path).read_bytes() if stat.S_ISREG(st.st_mode) else None
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_uid, st.st_mtime_ns, st.st_rdev, data)
    return out


LONG = "deep/" + "d" * 120 + "/" + "f" * 150


def layer_with_long_names(fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in (entry("deep/", "dir"), entry("deep/" + "d" * 120 + "/", "dir"),
                           entry(LONG, data=b"long\n" * 300, uid=1234567 if fmt == tarfile.PAX_FORMAT else 12),
                           entry("ln", "symlink", link="/" + "t" * 200),
                           entry("hard", "hardlink", link=LONG)):
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
@pytest.mark.parametrize("chunk", [1, 511, 512, 4096, 1 << 20])
def test_long_names_and_any_chunking(tmp_path, fmt, chunk):
    raw = layer_with_long_names(fmt)
    whole, pieces = tmp_path / "whole", tmp_path / "pieces"
    whole.mkdir()
    pieces.mkdir()
    assert unpack_layer(io.BytesIO(raw), whole) == 1500
    assert unpack_in_chunks(raw, pieces, chunk) == 1500
    assert snapshot(whole) == snapshot(pieces)
    assert (whole / LONG).read_bytes() == b"long\n" * 300
    assert os.readlink(whole / "ln") == "/" + "t" * 200
    assert os.lstat(whole / "hard").st_ino == os.lstat(whole / LONG).st_ino
    expected_uid = 1234567 if fmt == tarfile.PAX_FORMAT else 12
    assert os.lstat(whole / LONG).st_uid == expected_uid


def test_pax_mtime_with_fraction(tmp_path):
    info, data = entry("f", data=b"x")
    info.pax_headers = {"mtime": f"{MTIME_S}.5"}
    unpack_layer(io.BytesIO(make_tar([(info, data)])), tmp_path)
    assert os.lstat(tmp_path / "f").st_mtime_ns == MTIME_S * 10**9 + 500_000_000


def test_a_char_device_0_0_is_a_whiteout(tmp_path):
    """Overlay-form whiteouts in a tar (as some exporters write them) stay whiteouts,
    also over an entry of the same layer."""
    raw = make_tar([entry("etc/", "dir"), entry("etc/gone", "chr"),
                    entry("x", data=b"replaced"), entry("x", "chr")])
    unpack_layer(io.BytesIO(raw), tmp_path)
    for name in ("etc/gone", "x"):
        st = os.lstat(tmp_path / name)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


@pytest.mark.parametrize("make, reason", [
    (lambda: _typed("sparse", tarfile.GNUTYPE_SPARSE), "entry 'sparse': sparse files are not supported"),
    (lambda: _pax("s", {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}),
     "entry 's': sparse files are not supported"),
    (lambda: make_tar([entry("big", data=b"z" * 5000)])[:1024], "entry 'big': data ends early"),
    (lambda: make_tar([entry("a", data=b"a")])[:700], "entry 'a'"),
    (lambda: _pax("x", {"path": "bad\x00name"}), "NUL"),
    (lambda: b"\x01" * 512, "corrupt tar"),
])
def test_malformed_tars_are_refused_by_entry(tmp_path, make, reason):
    with pytest.raises(LayerError, match=reason.replace("(", r"\(")):
        unpack_layer(io.BytesIO(make()), tmp_path)


def _typed(name: str, kind: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info.tobuf(tarfile.GNU_FORMAT) + bytes(1024)


def _pax(name: str, headers: dict) -> bytes:
    info, data = entry(name, data=b"s")
    info.pax_headers = headers
    return make_tar([(info, data)])
