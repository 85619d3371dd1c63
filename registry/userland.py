"""The smallest userland that lets a container run: what a base image provides.

Real base images (busybox, alpine, debian) put a shell and coreutils in the
bottom layer; everything above builds on them.  docksim's bottom layers carry
the host's static BusyBox (Debian's busybox-static) with the usual applet
symlinks, or, when BusyBox is missing, copies of the host's `true`, `sleep` and
`sh` with the shared libraries `ldd` names, so `docker run IMAGE true` works
either way.  The container never depends on anything outside its layers.
"""
from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

APPLETS = ("sh", "true", "false", "sleep", "echo", "cat", "ls", "hostname", "id", "env", "ps")
DIRECTORIES = ("bin", "dev", "etc", "proc", "sys", "tmp")
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnobody:x:65534:\n"
_PT_INTERP = 3  # ELF program header type naming the dynamic loader


@dataclass(frozen=True)
class UserlandFile:
    path: str       # inside the layer, relative ("bin/busybox")
    source: Path    # host file whose bytes it gets
    mode: int


@dataclass(frozen=True)
class Userland:
    """What a bottom layer carries besides its filler."""

    kind: str                                   # "busybox" or "host"
    files: tuple[UserlandFile, ...]
    symlinks: tuple[tuple[str, str], ...]       # (path, target)
    directories: tuple[str, ...] = DIRECTORIES
    etc_files: tuple[tuple[str, bytes], ...] = (("etc/passwd", PASSWD), ("etc/group", GROUP))

    @property
    def content_bytes(self) -> int:
        return (sum(f.source.stat().st_size for f in self.files)
                + sum(len(data) for _, data in self.etc_files))

    def fingerprint(self) -> str:
        """Changes whenever the bytes a layer would carry change (a cache key)."""
        digest = hashlib.sha256(self.kind.encode())
        for f in self.files:
            digest.update(f"{f.path}\0{f.mode}\0".encode())
            digest.update(f.source.read_bytes())
        for path, target in self.symlinks:
            digest.update(f"{path}\0{target}\0".encode())
        for path, data in self.etc_files:
            digest.update(path.encode() + b"\0" + data)
        return f"{self.kind}:{digest.hexdigest()[:16]}"


def is_static_elf(path: Path) -> bool:
    """True when the ELF file names no dynamic loader (it runs without libraries)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return False
        is_64 = head[4] == 2
        order = "<" if head[5] == 1 else ">"
        if is_64:
            phoff, = struct.unpack_from(order + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
        else:
            phoff, = struct.unpack_from(order + "I", head, 28)
            phentsize, phnum = struct.unpack_from(order + "HH", head, 42)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type, = struct.unpack_from(order + "I", table, i * phentsize)
        if p_type == _PT_INTERP:
            return False
    return True


def shared_libraries(binary: Path) -> list[Path]:
    """Absolute paths of the libraries (and loader) `ldd` lists for `binary`."""
    try:
        result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return []
    libraries = []
    for line in result.stdout.splitlines():
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        # "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vdso has no path.
        words = line.split()
        path = words[2] if "=>" in words and len(words) > 2 else (words[0] if words else "")
        if path.startswith("/"):
            libraries.append(Path(path))
    return libraries


def _library_files(binaries: list[Path]) -> list[UserlandFile]:
    seen: dict[str, UserlandFile] = {}
    for binary in binaries:
        for library in shared_libraries(binary):
            # Stored under the path the loader looks for, with the bytes of
            # whatever that path resolves to on the host.
            path = library.as_posix().lstrip("/")
            seen.setdefault(path, UserlandFile(path, library.resolve(), 0o755))
    return [seen[path] for path in sorted(seen)]


def busybox_userland(busybox: Path) -> Userland:
    files = [UserlandFile("bin/busybox", busybox.resolve(), 0o755)]
    if not is_static_elf(busybox):
        files += _library_files([busybox])
    links = tuple((f"bin/{applet}", "busybox") for applet in APPLETS)
    return Userland("busybox", tuple(files), links)


def host_userland() -> Userland:
    """Copies of the host's true, sleep and sh, with their libraries."""
    binaries = {}
    for tool in ("true", "sleep", "sh"):
        found = shutil.which(tool, path="/bin:/usr/bin")
        if found is None:
            raise FileNotFoundError(f"no {tool} on this host to put into a bottom layer")
        binaries[tool] = Path(found).resolve()
    files = [UserlandFile(f"bin/{tool}", path, 0o755) for tool, path in binaries.items()]
    files += _library_files(list(binaries.values()))
    return Userland("host", tuple(files), ())


def find_userland() -> Userland:
    """BusyBox when installed (the usual case), else the host's own binaries."""
    busybox = shutil.which("busybox")
    return busybox_userland(Path(busybox)) if busybox else host_userland()
