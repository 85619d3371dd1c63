"""Faults of the registry: what a scenario's ``[registry] faults`` table declares.

Real registries misbehave.  Docker Hub answers 503 when a backend is down and
429 with a ``Retry-After`` when a client pulls too fast; a CDN or a load
balancer stalls a connection mid-blob or drops it; a broken proxy or bad RAM
corrupts a byte; a congested path drips the bytes slowly.  One table describes
these for both halves of docksim, and both draw them with the same code
(``FaultDraws``) from the same seeded stream: the model's registry
(``model/registry.py``, ``model/sources.py``) and the real one
(``registry/faults.py``, ``python -m registry serve --faults``).

Every GET of a layer blob draws at most one fault.  With u uniform in [0, 1),
the rates are laid end to end in the order of ``KINDS``: u below
``error_503_rate`` is a 503, the next ``rate_limit_429_rate`` a 429, and so
on; above their sum the GET is served normally.  A fault that hits the body
(stall, cut, flip) happens at a second uniform draw, the fraction of the body
sent before it.  The kinds:

* ``503``   the GET is answered ``503 Service Unavailable`` (OCI code UNAVAILABLE);
* ``429``   ``429 Too Many Requests`` with ``Retry-After: retry_after_s``;
* ``stall`` the body stops for ``stall_s``, then goes on -- unless the client's
  read timeout (``[daemon] read_timeout_s``) gave up first;
* ``cut``   the connection is closed part way through the body;
* ``flip``  one byte of the body is inverted, so the blob misses its digest;
* ``drip``  the whole body is sent at no more than ``drip_kbps``.

``max_faults`` caps the number of faults drawn: per replication in the model,
per process for the real registry (``measure`` starts one per replication).  Image configs and manifests are never
faulted: dockerd fetches them once while it resolves, without retries.
"""
from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass, fields
from typing import Any, Callable

from vocab.schema import Field, ScenarioError, check_table, key_path, non_negative, positive

KINDS = ("503", "429", "stall", "cut", "flip", "drip")
RATE_KEYS = {"503": "error_503_rate", "429": "rate_limit_429_rate", "stall": "stall_rate",
             "cut": "cut_rate", "flip": "flip_rate", "drip": "drip_rate"}
BODY_KINDS = ("stall", "cut", "flip")  # the kinds that happen at a point in the body


@dataclass(frozen=True)
class RegistryFaults:
    """Rates are fractions of layer blob GETs; their sum is at most 1."""

    error_503_rate: float = 0.0
    rate_limit_429_rate: float = 0.0
    retry_after_s: float = 1.0      # the 429's Retry-After
    stall_rate: float = 0.0
    stall_s: float = 2.0            # how long a stalled body is silent
    cut_rate: float = 0.0
    flip_rate: float = 0.0
    drip_rate: float = 0.0
    drip_kbps: float = 800.0        # a dripping body's rate, 10**3 bit/s
    max_faults: int | None = None   # None: no cap

    def rate(self, kind: str) -> float:
        return getattr(self, RATE_KEYS[kind])

    @property
    def total_rate(self) -> float:
        return sum(self.rate(kind) for kind in KINDS)

    @property
    def any(self) -> bool:
        return self.total_rate > 0 and self.max_faults != 0

    @property
    def drip_Bps(self) -> float:
        return self.drip_kbps * 1000 / 8


@dataclass(frozen=True)
class Fault:
    """One drawn fault: its kind and, for stall/cut/flip, where in the body (0 <= at < 1)."""

    kind: str
    at: float = 0.0


class FaultDraws:
    """The faults of one registry, drawn GET by GET from `rng`; counts them by kind.

    Both the model and the real registry call ``next()`` once per layer blob
    GET (retries and Range resumes included), so the same stream gives the
    same sequence of faults on both sides.  Not thread-safe: the real registry
    holds a lock around it."""

    def __init__(self, faults: RegistryFaults, rng: random.Random):
        self.faults = faults
        self.rng = rng
        self.counts = {kind: 0 for kind in KINDS}

    @property
    def injected(self) -> int:
        return sum(self.counts.values())

    def next(self) -> Fault | None:
        faults = self.faults
        if not faults.any or (faults.max_faults is not None and self.injected >= faults.max_faults):
            return None
        u = self.rng.random()
        edge = 0.0
        for kind in KINDS:
            edge += faults.rate(kind)
            if u < edge:
                self.counts[kind] += 1
                return Fault(kind, self.rng.random() if kind in BODY_KINDS else 0.0)
        return None


def fault_rng(seed: int, replication: int = 0) -> random.Random:
    """The stream faults are drawn from: the model's registry stream of that
    replication (``model.simulation.stream(seed, replication, "registry")``)."""
    return random.Random(f"docksim/{seed}/{replication}/registry")


def _rate(value: float) -> str | None:
    return None if 0 <= value <= 1 else f"must be between 0 and 1, not {value}"


FAULTS = {"error_503_rate": Field(float, 0.0, _rate),
          "rate_limit_429_rate": Field(float, 0.0, _rate),
          "retry_after_s": Field(float, 1.0, non_negative),
          "stall_rate": Field(float, 0.0, _rate),
          "stall_s": Field(float, 2.0, positive),
          "cut_rate": Field(float, 0.0, _rate),
          "flip_rate": Field(float, 0.0, _rate),
          "drip_rate": Field(float, 0.0, _rate),
          "drip_kbps": Field(float, 800.0, positive),
          "max_faults": Field(int, None, non_negative)}

Fail = Callable[[str, str], Exception]


def load_faults(raw: Any, table: Callable[[Any, dict, str], dict], fail: Fail,
                where: str = "registry.faults",
                preset: dict[str, float] | None = None) -> RegistryFaults:
    """Validate a faults table; ``preset`` holds values given under older names
    (``[registry] error_rate``), which the table must not give again."""
    values = table(raw, FAULTS, where)
    for key, value in (preset or {}).items():
        if key in raw:
            raise fail(key_path(where, key), "given twice (once under its older name)")
        values[key] = value
    faults = RegistryFaults(**values)
    if faults.total_rate > 1 + 1e-9:
        given = ", ".join(f"{RATE_KEYS[k]} = {faults.rate(k):g}" for k in KINDS if faults.rate(k))
        raise fail(where, f"the rates add up to {faults.total_rate:g} ({given}); "
                   "they are fractions of one GET and must not exceed 1")
    return faults


def _spec_fail(path: str, problem: str) -> ScenarioError:
    return ScenarioError(f"--faults: {path}: {problem}")


def _spec_table(raw: Any, schema: dict, where: str) -> dict:
    return check_table(raw, schema, where, _spec_fail)


def parse_faults_spec(text: str) -> RegistryFaults:
    """``--faults``: ``KEY=VALUE,...`` (keys of ``[registry] faults``) or a TOML
    file, either a scenario (its ``[registry] faults`` is used) or a file of
    those keys alone.  ScenarioError with one line on any mistake."""
    text = text.strip()
    if text.endswith(".toml"):
        try:
            with open(text, "rb") as f:
                doc = tomllib.load(f)
        except FileNotFoundError:
            raise ScenarioError(f"--faults: {text}: no such file") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ScenarioError(f"--faults: {text}: cannot read: {exc}") from None
        registry = doc.get("registry")
        if isinstance(registry, dict) and "scenario" in doc:
            raw = registry.get("faults", {})
        else:
            raw = doc
        return load_faults(raw, _spec_table, _spec_fail, where=text)
    raw: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ScenarioError(f"--faults: {part!r} is not KEY=VALUE, like cut_rate=0.2")
        try:
            raw[key] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            raise ScenarioError(f"--faults: {key}: {value.strip()!r} is not a number") from None
    return load_faults(raw, _spec_table, _spec_fail, where="faults")


def faults_spec(faults: RegistryFaults) -> str:
    """The ``--faults KEY=VALUE,...`` text for `faults` (values that differ from the defaults)."""
    default = RegistryFaults()
    parts = [f"{f.name}={getattr(faults, f.name)!r}" for f in fields(faults)
             if getattr(faults, f.name) != getattr(default, f.name)]
    return ",".join(parts)
