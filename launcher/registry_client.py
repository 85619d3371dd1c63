"""A registry client over plain HTTP: the requests `docker pull` sends.

dockerd resolves an image with `GET /v2/` (the API probe), the manifest by tag
(an index first when the image is multi-platform), then the image config blob,
and finally one `GET` per missing layer blob.  Each request here is one round
trip on a kept-alive connection; blobs stream so that their sha256 can be
checked while the bytes arrive.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import platform
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64"}
DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60


class PullError(Exception):
    """A pull that cannot go on; the text is what `docker pull` would print.

    `status` is the HTTP status dockerd answers when the pull fails before any
    progress was sent: 404 when the registry does not know the image, else 500.
    """

    def __init__(self, message: str, status: int = 500):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Reference:
    registry: str    # base URL, e.g. http://127.0.0.1:5000
    repository: str  # e.g. lecture/hello
    tag: str


def parse_reference(ref: str, default_registry: str) -> Reference:
    """Split `[host[:port]/]repo[:tag]`; a ref without a host goes to the default
    registry, as Docker sends it to Docker Hub (or to its configured mirror)."""
    name, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return Reference(f"http://{first}", rest, tag)
    return Reference(default_registry, name, tag)


def familiar_name(name: str) -> str:
    """An image name as `docker images` shows it: the docker CLI sends fully
    qualified names (`docker.io/library/hello`, `docker.io/lecture/hello`) and
    dockerd stores and shows the familiar ones (`hello`, `lecture/hello`).
    docksim sends a name without a host to its default registry, as dockerd
    sends it to Docker Hub, so both forms name one image."""
    first, _, rest = name.partition("/")
    if rest and first in DOCKER_HUB_HOSTS:
        name = rest
    elif rest and ("." in first or ":" in first or first == "localhost"):
        return name  # another registry: the name stays as it is
    if name.startswith("library/") and name.count("/") == 1:
        name = name[len("library/"):]
    return name


def host_arch() -> str:
    machine = platform.machine()
    return GO_ARCH.get(machine, machine)


def _error_text(body: bytes) -> str:
    """The message of an OCI error body, or the raw start of the body."""
    try:
        errors = json.loads(body)["errors"]
        return "; ".join(f"{e.get('code', '').lower().replace('_', ' ')}: {e.get('message', '')}"
                         for e in errors)
    except (ValueError, KeyError, TypeError):
        return body[:200].decode(errors="replace")


class RegistryClient:
    """One kept-alive HTTP connection to a registry."""

    def __init__(self, base_url: str):
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise PullError(f"registry {base_url!r}: only plain-HTTP registries are supported")
        self.base_url = base_url
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=TIMEOUT_S)

    def close(self) -> None:
        self.conn.close()

    def request(self, path: str, accept: str = "") -> http.client.HTTPResponse:
        headers = {"Accept": accept} if accept else {}
        try:
            self.conn.request("GET", path, headers=headers)
            return self.conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            raise PullError(f"{self.base_url}{path}: {exc}") from None

    def get(self, path: str, accept: str = "", what: str = "") -> tuple[bytes, str]:
        """GET a small document; return its bytes and content type."""
        resp = self.request(path, accept)
        body = resp.read()
        if resp.status != 200:
            raise PullError(f"{what or path}: {resp.status} {_error_text(body)}",
                            404 if resp.status == 404 else 500)
        return body, resp.getheader("Content-Type", "")

    def probe(self) -> None:
        """`GET /v2/`: is this a registry that speaks the distribution API?"""
        resp = self.request("/v2/")
        resp.read()
        if resp.status not in (200, 401):
            raise PullError(f"{self.base_url} does not answer the /v2/ API ({resp.status})")

    def fetch_blob(self, repository: str, digest: str, out, expected_bytes: int,
                   on_bytes: Callable[[int], None] = lambda n: None) -> int:
        """Stream one blob into the file `out`, checking its sha256 as it arrives."""
        resp = self.request(f"/v2/{repository}/blobs/{digest}")
        if resp.status != 200:
            raise PullError(f"blob {digest[:19]}: {resp.status} {_error_text(resp.read())}")
        hasher = hashlib.sha256()
        received = 0
        try:
            while chunk := resp.read(CHUNK_BYTES):
                hasher.update(chunk)
                out.write(chunk)
                received += len(chunk)
                on_bytes(received)
        except (OSError, http.client.HTTPException) as exc:
            raise PullError(f"blob {digest[:19]}: connection lost after {received} bytes: {exc}") from None
        if received != expected_bytes:
            raise PullError(f"blob {digest[:19]}: got {received} bytes, manifest says {expected_bytes}")
        if f"sha256:{hasher.hexdigest()}" != digest:
            raise PullError(f"blob {digest[:19]}: content does not match its digest")
        return received


def check_digest(data: bytes, digest: str, what: str) -> None:
    if f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
        raise PullError(f"{what}: content does not match digest {digest}")


def pick_platform(index: dict, ref: str) -> dict:
    """From an image index / manifest list, the entry for this machine (uname -m)."""
    arch = host_arch()
    for entry in index.get("manifests", []):
        plat = entry.get("platform", {})
        if plat.get("os") == "linux" and plat.get("architecture") == arch:
            return entry
    raise PullError(f"{ref}: no matching manifest for linux/{arch} in the manifest list entries")
