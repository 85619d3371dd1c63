"""The cluster tables of a scenario: nodes, the registry, how images are distributed.

A scenario without these tables is the one-node world of the first version:
one node called ``node`` whose link to the registry is ``[network]
bandwidth_mbps`` with round trips of ``[network] rtt_ms``.  With them it
describes a cluster:

* ``[[node]]`` groups of nodes (``count`` of them, named ``NAME-0`` ...), each
  with its access link, its image cache and the images cached at time 0;
* ``[registry]``: how many requests it serves at once, its service time, token
  auth, a pull rate limit (429) and injected faults (``faults``, see
  ``vocab/faults.py``; ``error_rate`` and ``reset_rate`` are the older names of
  ``faults.error_503_rate`` and ``faults.cut_rate``);
* ``[distribution]``: from the registry itself, through a pull-through mirror,
  or peer to peer in pieces.

Values are checked here; their meaning in the model is documented where it is
modelled (``model/``).  Units are in the names, as everywhere.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Callable

from vocab.faults import RegistryFaults, load_faults
from vocab.limits import MAX_NODES, between
from vocab.schema import (Field, at_least_one, key_path, non_negative, one_of,
                          positive)

TOPOLOGIES = ("star", "racks")
MODES = ("registry", "mirror", "p2p")
AUTHS = ("none", "token")
DEFAULT_NODE = "node"
_NAME_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")  # as scenario names


@dataclass(frozen=True)
class NodeGroup:
    """``count`` nodes alike (or one node called ``name`` when count is absent)."""

    name: str
    count: int | None = None
    bandwidth_mbps: float | None = None   # access link; None: [network] bandwidth_mbps
    latency_ms: float = 0.0               # one-way latency of the access link
    cache_mb: float | None = None         # image cache capacity; None: no limit
    cached: tuple[str, ...] = ()          # image refs present at time 0

    def names(self) -> list[str]:
        if self.count is None:
            return [self.name]
        return [f"{self.name}-{i}" for i in range(self.count)]


@dataclass(frozen=True)
class RateLimit:
    """Docker Hub's pull limit: manifest GETs per client address per window."""

    pulls: int
    window_s: float


@dataclass(frozen=True)
class Registry:
    workers: int | None = None       # requests served at once; None: no limit
    request_ms: float | None = None  # service time per request; None: the model's calibrated cost
    auth: str = "none"
    rate_limit: RateLimit | None = None
    faults: RegistryFaults = RegistryFaults()  # 503, 429, stalls, cuts, flips, drips


@dataclass(frozen=True)
class Distribution:
    mode: str = "registry"
    mirror_bandwidth_mbps: float | None = None  # None: no limit
    peer_upload_mbps: float | None = None       # None: the node's access bandwidth
    piece_mb: float = 4.0
    peer_upload_slots: int = 4     # pieces a node uploads at once (each gets an equal slot)
    peer_download_slots: int = 4   # pieces one layer download fetches at once


def _fraction(value: float) -> str | None:
    return None if 0 <= value < 1 else f"must be at least 0 and below 1, not {value}"


def _node_name(value: str) -> str | None:
    if _NAME_RE.match(value):
        return None
    return f"{value!r} must be lowercase letters, digits and dashes"


NODE = {"name": Field(str, check=_node_name),
        "count": Field(int, None, between(1, MAX_NODES)),
        "bandwidth_mbps": Field(float, None, positive),
        "latency_ms": Field(float, 0.0, non_negative),
        "cache_mb": Field(float, None, positive),
        "cached": Field(list, [])}
REGISTRY = {"workers": Field(int, None, at_least_one),
            "request_ms": Field(float, None, non_negative),
            "auth": Field(str, "none", one_of(*AUTHS)),
            "rate_limit": Field(dict, None),
            "faults": Field(dict, {}),
            # older names of faults.error_503_rate and faults.cut_rate
            "error_rate": Field(float, 0.0, _fraction),
            "reset_rate": Field(float, 0.0, _fraction)}
_ALIASES = {"error_rate": "error_503_rate", "reset_rate": "cut_rate"}
RATE_LIMIT = {"pulls": Field(int, check=at_least_one),
              "window_s": Field(float, check=positive)}
DISTRIBUTION = {"mode": Field(str, "registry", one_of(*MODES)),
                "mirror_bandwidth_mbps": Field(float, None, positive),
                "peer_upload_mbps": Field(float, None, positive),
                "piece_mb": Field(float, 4.0, positive),
                "peer_upload_slots": Field(int, 4, at_least_one),
                "peer_download_slots": Field(int, 4, at_least_one)}
# [network] keys of the cluster world, beside bandwidth_mbps and rtt_ms
NETWORK_EXTRA = {"topology": Field(str, "star", one_of(*TOPOLOGIES)),
                 "registry_bandwidth_mbps": Field(float, None, positive),
                 "rack_size": Field(int, 40, at_least_one),
                 "rack_uplink_mbps": Field(float, None, positive),
                 "public_ips": Field(int, None, at_least_one),
                 "slow_start": Field(bool, False)}
DAEMON_EXTRA = {"max_download_attempts": Field(int, 5, at_least_one),
                "retry_backoff_s": Field(float, 5.0, non_negative),
                "read_timeout_s": Field(float, 60.0, positive),
                "extract": Field(str, "serial", one_of("serial", "parallel")),
                "cores": Field(int, None, at_least_one),
                "api_workers": Field(int, None, at_least_one)}
ARRIVALS = ("fixed", "poisson")
POPULARITY = ("uniform", "zipf")
STEP_EXTRA = {"node": Field(str, ""),
              "arrivals": Field(str, "fixed", one_of(*ARRIVALS)),
              "rate_per_s": Field(float, None, positive),
              "duration_s": Field(float, None, positive),
              "images": Field(list, None),
              "popularity": Field(str, "uniform", one_of(*POPULARITY)),
              "zipf_s": Field(float, 1.0, positive),
              "retries": Field(int, 0, non_negative)}


Fail = Callable[[str, str], Exception]
Table = Callable[[Any, dict, str], dict]


def load_nodes(raw: list, table: Table, fail: Fail, refs: list[str],
               normalise: Callable[[str], str | None]) -> tuple[NodeGroup, ...]:
    """The [[node]] groups; absent, one node called ``node``.  Names must not collide."""
    if not raw:
        return (NodeGroup(DEFAULT_NODE),)
    groups: list[NodeGroup] = []
    seen: set[str] = set()
    total = 0
    for i, entry in enumerate(raw):
        where = key_path("node", i)
        values = table(entry, NODE, where)
        total += values["count"] or 1
        if total > MAX_NODES:  # before the names are spelled out, one by one
            raise fail(key_path(where, "count"), f"more than {MAX_NODES:,} nodes in all")
        cached = []
        for j, ref in enumerate(values["cached"]):
            path = key_path(key_path(where, "cached"), j)
            full = normalise(ref) if isinstance(ref, str) else None
            if full not in refs:
                raise fail(path, f"unknown image {ref!r} (declared: {_listing(refs)})")
            cached.append(full)
        values["cached"] = tuple(cached)
        group = NodeGroup(**values)
        for name in group.names():
            if name in seen:
                raise fail(key_path(where, "name"), f"node name {name!r} is used twice")
            seen.add(name)
        groups.append(group)
    return tuple(groups)


def load_registry(raw: dict, table: Table, fail: Fail) -> Registry:
    values = table(raw, REGISTRY, "registry")
    preset = {new: values.pop(old) for old, new in _ALIASES.items() if old in raw}
    for old in _ALIASES:
        values.pop(old, None)
    values["faults"] = load_faults(values["faults"], table, fail, "registry.faults", preset)
    if values["rate_limit"] is not None:
        values["rate_limit"] = RateLimit(**table(values["rate_limit"], RATE_LIMIT,
                                                 "registry.rate_limit"))
    return Registry(**values)


def load_distribution(raw: dict, table: Table) -> Distribution:
    return Distribution(**table(raw, DISTRIBUTION, "distribution"))


def _listing(names: list[str], most: int = 6) -> str:
    shown = ", ".join(names[:most])
    return shown + (f", ... ({len(names)} in all)" if len(names) > most else "")


def match_nodes(pattern: str, names: list[str], where: str, fail: Fail) -> tuple[str, ...]:
    """The nodes a step runs on: a glob over node names; empty means the first node."""
    if not pattern:
        return (names[0],)
    matched = tuple(fnmatch.filter(names, pattern))
    if not matched:
        raise fail(where, f"no node matches {pattern!r} (nodes: {_listing(names)})")
    return matched


def match_images(raw: list, refs: list[str], where: str, fail: Fail,
                 normalise: Callable[[str], str | None]) -> tuple[str, ...]:
    """A step's image choices, in popularity order: refs, or globs over the declared refs."""
    if not raw:
        raise fail(where, "needs at least one entry")
    chosen: list[str] = []
    for j, entry in enumerate(raw):
        path = key_path(where, j)
        if not isinstance(entry, str):
            raise fail(path, f"must be a string, not {entry!r}")
        if any(c in entry for c in "*?["):
            found = [ref for ref in refs if fnmatch.fnmatchcase(ref, entry)]
        else:
            found = [normalise(entry)] if normalise(entry) in refs else []
        if not found:
            raise fail(path, f"unknown image {entry!r} (declared: {_listing(refs)})")
        chosen.extend(ref for ref in found if ref not in chosen)
    return tuple(chosen)


def check_step_extras(values: dict, where: str, fail: Fail, explicit: set[str]) -> None:
    """Combinations a step may not have; ``explicit`` are the keys the file gave."""
    if values["arrivals"] == "poisson":
        for key in ("rate_per_s", "duration_s"):
            if values[key] is None:
                raise fail(key_path(where, key), "missing (arrivals = \"poisson\" needs "
                           "rate_per_s and duration_s)")
        if "repeat" in explicit:
            raise fail(key_path(where, "repeat"), "not with arrivals = \"poisson\" "
                       "(each arrival is one request)")
    else:
        for key in ("rate_per_s", "duration_s"):
            if values[key] is not None:
                raise fail(key_path(where, key), "only with arrivals = \"poisson\"")
    if "image" in explicit and "images" in explicit:
        raise fail(key_path(where, "images"), "give image or images, not both")
    if "image" not in explicit and "images" not in explicit:
        raise fail(key_path(where, "image"), "missing required key (or images)")
    if "images" not in explicit and ("popularity" in explicit or "zipf_s" in explicit):
        key = "popularity" if "popularity" in explicit else "zipf_s"
        raise fail(key_path(where, key), "only with images")
    if "zipf_s" in explicit and values["popularity"] != "zipf":
        raise fail(key_path(where, "zipf_s"), "only with popularity = \"zipf\"")
