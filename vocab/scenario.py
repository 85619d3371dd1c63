"""The scenario: one small world that is both simulated and measured.

A scenario names the images (their layers, bottom first), the link between the
registry and the node, the daemon's settings and what the clients ask for.  It
is loaded from TOML into frozen dataclasses; every mistake in the file becomes a
``ScenarioError`` whose text is one line: ``FILE: key.path: problem``.

Units are in the names: MB are 10**6 bytes, Mbit/s are 10**6 bit/s.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vocab.cluster import (DAEMON_EXTRA, NETWORK_EXTRA, STEP_EXTRA, Distribution,
                           NodeGroup, Registry, check_step_extras, load_distribution,
                           load_nodes, load_registry, match_images, match_nodes)
from vocab.limits import (MAX_LAYER_MB, MAX_REPLICATIONS, between, positive_at_most,
                          step_requests, too_many_pieces, too_many_requests)
from vocab.schema import (Field, ScenarioError, at_least_one, check_table,
                          key_path, non_negative, one_of, positive)

COMMANDS = ("pull", "run", "rmi")
NAME_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# Docker's reference grammar, without digests: [host[:port]/]path[:tag]
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
# a first component is a host only with a dot or a port, or when it is localhost
_HOST = r"(?:(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+(?::[0-9]+)?|[a-zA-Z0-9-]+:[0-9]+|localhost)/)?"
REF_RE = re.compile(rf"^({_HOST}{_COMPONENT}(?:/{_COMPONENT})*)(?::([\w][\w.-]{{0,127}}))?$")
MB = 1_000_000


@dataclass(frozen=True)
class Layer:
    """One image layer.  Docker identifies layers by content; here by name, so a
    name used in two images is one shared layer, stored and pulled once."""

    name: str
    size_mb: float          # uncompressed (what extraction writes)
    compression: float      # uncompressed / gzip size; 1.0 = random data

    @property
    def size_bytes(self) -> int:
        return round(self.size_mb * MB)

    @property
    def compressed_bytes(self) -> int:
        """Bytes on the wire: what `docker pull` downloads for this layer."""
        return round(self.size_mb * MB / self.compression)


@dataclass(frozen=True)
class Image:
    ref: str                  # normalised: always carries a tag
    layers: tuple[Layer, ...]  # bottom first, as in an image manifest

    @property
    def repository(self) -> str:
        return self.ref.rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.ref.rsplit(":", 1)[1]


@dataclass(frozen=True)
class Network:
    """The link between the registry and the node (in a cluster: the world's links)."""

    bandwidth_mbps: float | None  # None: no limit; in a cluster, the default access link
    rtt_ms: float                 # in a cluster: between the core switch and the registry
    topology: str = "star"        # "star" | "racks"
    registry_bandwidth_mbps: float | None = None  # the registry's uplink; None: no limit
    rack_size: int = 40
    rack_uplink_mbps: float | None = None
    public_ips: int | None = None  # addresses the nodes share (NAT); None: one per node
    slow_start: bool = False       # charge TCP slow start on every transfer


@dataclass(frozen=True)
class Daemon:
    max_concurrent_downloads: int  # dockerd's default is 3
    max_download_attempts: int = 5  # dockerd's default
    retry_backoff_s: float = 5.0    # dockerd waits this x the failures so far before a retry
    read_timeout_s: float = 60.0    # a blob connection silent this long is given up (docksim's)
    extract: str = "serial"         # "serial" (Docker: bottom to top) | "parallel"
    cores: int | None = None        # CPUs for extraction; None: no contention
    api_workers: int | None = None  # Engine API requests handled at once; None: no limit


@dataclass(frozen=True)
class Step:
    """`clients` clients issue `command` at `at_s`, each `repeat` times in a row."""

    at_s: float
    command: str
    image: str
    clients: int
    repeat: int
    run_s: float  # the container runs `sleep run_s`; 0 means `true`
    node: str = ""                   # the glob as written; "" means the first node
    nodes: tuple[str, ...] = ()      # the nodes it matched, in declaration order
    arrivals: str = "fixed"          # "fixed" (at_s, repeat) | "poisson"
    rate_per_s: float | None = None  # poisson: arrivals per second per client
    duration_s: float | None = None  # poisson: arrivals during [at_s, at_s + duration_s)
    images: tuple[str, ...] = ()     # several images, most popular first; `image` is the first
    popularity: str = "uniform"      # how a request picks among `images`: uniform | zipf
    zipf_s: float = 1.0              # zipf: P(rank k) proportional to k ** -zipf_s
    retries: int = 0                 # failed pulls retried with kubelet's back-off

    @property
    def choices(self) -> tuple[str, ...]:
        """The images a request of this step may ask for."""
        return self.images or (self.image,)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    seed: int
    replications: int
    network: Network
    daemon: Daemon
    images: tuple[Image, ...]
    steps: tuple[Step, ...]
    source: str = ""  # the file it came from, for messages
    nodes: tuple[NodeGroup, ...] = (NodeGroup("node"),)
    registry: Registry = Registry()
    distribution: Distribution = Distribution()

    def node_names(self) -> list[str]:
        """Every node, in declaration order (a group of count N gives NAME-0 ... NAME-N-1)."""
        return [name for group in self.nodes for name in group.names()]

    def image(self, ref: str) -> Image:
        for image in self.images:
            if image.ref == ref:
                return image
        raise KeyError(ref)

    def layers(self) -> dict[str, Layer]:
        """Every distinct layer by name."""
        return {layer.name: layer for image in self.images for layer in image.layers}

    def layer_bytes(self) -> dict[str, int]:
        """Every distinct layer's content size in bytes, by name."""
        return {name: layer.size_bytes for name, layer in self.layers().items()}

    def bottom_layers(self) -> frozenset[str]:
        """The layers at the bottom of some image.  Like a base image's layer, each
        carries a small userland (a shell and `true`) besides its filler, so that
        the image can run; its real binaries unpack slower than filler does."""
        return frozenset(image.layers[0].name for image in self.images if image.layers)

    def with_seed(self, seed: int) -> "Scenario":
        return replace(self, seed=seed)


def normalise_ref(ref: str) -> str | None:
    """Return ref with an explicit tag (Docker's default is `latest`), or None."""
    match = REF_RE.match(ref)
    if not match:
        return None
    return f"{match.group(1)}:{match.group(2) or 'latest'}"


def _check_name(value: str) -> str | None:
    if NAME_RE.match(value):
        return None
    return f"{value!r} must be lowercase letters, digits and dashes"


def _check_ref(value: str) -> str | None:
    if normalise_ref(value):
        return None
    return f"{value!r} is not an image reference like 'lecture/hello:1'"


_SCENARIO = {
    "name": Field(str, check=_check_name),
    "description": Field(str, ""),
    "seed": Field(int, 0, non_negative),
    "replications": Field(int, 1, between(1, MAX_REPLICATIONS)),
}
_NETWORK = {"bandwidth_mbps": Field(float, None, positive),
            "rtt_ms": Field(float, 0.0, non_negative), **NETWORK_EXTRA}
_DAEMON = {"max_concurrent_downloads": Field(int, 3, at_least_one), **DAEMON_EXTRA}
_IMAGE = {"ref": Field(str, check=_check_ref), "layers": Field(list)}
_LAYER = {"name": Field(str, check=_check_name),
          "size_mb": Field(float, check=positive_at_most(MAX_LAYER_MB)),
          "compression": Field(float, 1.0,
                               lambda v: None if v >= 1.0 else f"must be at least 1.0, not {v}")}
_STEP = {"at_s": Field(float, 0.0, non_negative),
         "command": Field(str, check=one_of(*COMMANDS)),
         "image": Field(str, None, check=_check_ref),
         "clients": Field(int, 1, at_least_one),
         "repeat": Field(int, 1, at_least_one),
         "run_s": Field(float, 0.0, non_negative), **STEP_EXTRA}
_TOP = {"scenario": Field(dict), "network": Field(dict, {}), "daemon": Field(dict, {}),
        "image": Field(list, []), "step": Field(list), "node": Field(list, []),
        "registry": Field(dict, {}), "distribution": Field(dict, {}),
        "catalog": Field(dict, None)}


class _Loader:
    """Turns one parsed TOML document into a Scenario, naming the file in errors."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {path}: {problem}")

    def table(self, raw: Any, schema: dict, where: str) -> dict:
        return check_table(raw, schema, where, self.fail)

    def array(self, raw: list, where: str) -> list:
        if not raw:
            raise self.fail(where, "needs at least one entry")
        return raw

    def layers(self, raw: list, where: str, seen: dict[str, Layer]) -> tuple[Layer, ...]:
        layers = []
        for i, entry in enumerate(self.array(raw, where)):
            layer = Layer(**self.table(entry, _LAYER, key_path(where, i)))
            if layer.name in (other.name for other in layers):
                raise self.fail(key_path(where, i), f"layer {layer.name!r} appears twice in one image")
            if seen.setdefault(layer.name, layer) != layer:
                raise self.fail(key_path(where, i), f"layer {layer.name!r} is declared elsewhere "
                                "with another size or compression (one name, one layer)")
            layers.append(layer)
        return tuple(layers)

    def images(self, raw: list, catalog: tuple[Image, ...] = ()) -> tuple[Image, ...]:
        images: list[Image] = []
        seen: dict[str, Layer] = {layer.name: layer for image in catalog for layer in image.layers}
        known = {image.ref for image in catalog}
        for i, entry in enumerate(self.array(raw, "image") if raw or not catalog else []):
            where = key_path("image", i)
            values = self.table(entry, _IMAGE, where)
            ref = normalise_ref(values["ref"])
            if ref in known or any(image.ref == ref for image in images):
                raise self.fail(key_path(where, "ref"), f"image {ref!r} is declared twice")
            images.append(Image(ref, self.layers(values["layers"], key_path(where, "layers"), seen)))
        return tuple(images) + catalog

    def steps(self, raw: list, images: tuple[Image, ...], nodes: list[str]) -> tuple[Step, ...]:
        known = {image.ref for image in images}
        refs = [image.ref for image in images]
        steps = []
        for i, entry in enumerate(self.array(raw, "step")):
            where = key_path("step", i)
            values = self.table(entry, _STEP, where)
            check_step_extras(values, where, self.fail, set(entry))
            if values["images"] is not None:
                values["images"] = match_images(values["images"], refs, key_path(where, "images"),
                                                self.fail, normalise_ref)
                values["image"] = values["images"][0]
            else:
                values["images"] = ()
                values["image"] = normalise_ref(values["image"])
            if values["image"] not in known:
                shown = ", ".join(sorted(known)[:6]) + (", ..." if len(known) > 6 else "")
                raise self.fail(key_path(where, "image"),
                                f"unknown image {values['image']!r} (declared: {shown})")
            values["nodes"] = match_nodes(values["node"], nodes, key_path(where, "node"), self.fail)
            steps.append(Step(**values))
        return tuple(steps)

    def scenario(self, doc: dict) -> Scenario:
        top = self.table(doc, _TOP, "")
        head = self.table(top["scenario"], _SCENARIO, "scenario")
        network = Network(**self.table(top["network"], _NETWORK, "network"))
        daemon = Daemon(**self.table(top["daemon"], _DAEMON, "daemon"))
        catalog: tuple[Image, ...] = ()
        if top["catalog"] is not None:
            from vocab.catalog import generate, load_catalog
            catalog = generate(load_catalog(top["catalog"], self.table, head["seed"]))
        images = self.images(top["image"], catalog)
        refs = [image.ref for image in images]
        nodes = load_nodes(top["node"], self.table, self.fail, refs, normalise_ref)
        names = [name for group in nodes for name in group.names()]
        steps = self.steps(top["step"], images, names)
        self.check_work(steps, head["replications"])
        distribution = load_distribution(top["distribution"], self.table)
        if distribution.mode == "p2p":
            piece_bytes = round(distribution.piece_mb * MB)
            for layer in {layer.name: layer for image in images for layer in image.layers}.values():
                problem = too_many_pieces(layer.compressed_bytes, piece_bytes, layer.name)
                if problem:
                    raise self.fail("distribution.piece_mb", problem)
        return Scenario(**head, network=network, daemon=daemon, images=images,
                        steps=steps, source=self.source,
                        nodes=nodes, registry=load_registry(top["registry"], self.table, self.fail),
                        distribution=distribution)

    def check_work(self, steps: tuple[Step, ...], replications: int) -> None:
        """Refuse, at the step that passes it, a scenario asking for too many requests."""
        total = 0.0
        for i, step in enumerate(steps):
            total += replications * step_requests(step.clients, len(step.nodes), step.arrivals,
                                                  step.repeat, step.rate_per_s, step.duration_s)
            problem = too_many_requests(total)
            if problem:
                raise self.fail(key_path("step", i), problem)


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Parse scenario TOML text; `source` names it in error messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    return _Loader(source).scenario(doc)


def load_scenario(path: str | Path, *, overrides: dict[str, object] | None = None) -> Scenario:
    """Read and validate a scenario file.

    ``overrides`` ({"network.rtt_ms": 20, "step.clients": 4}) edit the raw
    document before validation, as ``--set`` does; see ``vocab.overrides``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    if overrides:
        from vocab.overrides import load_overridden  # imported here: it is optional machinery
        return load_overridden(text, str(path), overrides, _Loader(str(path)).scenario,
                               parse_scenario)
    return parse_scenario(text, str(path))
