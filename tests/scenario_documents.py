"""Random scenario documents for tests/test_scenario_fuzz.py (hypothesis strategies).

Two kinds, drawn half and half by `documents`:

* `mild`: a valid document (images, steps, nodes, registry, distribution with
  values each key accepts), then up to two mutations: a value replaced by junk
  or by a value meant for another key, a key deleted, a junk key added;
* `wild`: the real tables and keys in any subset, plausible or junk values of
  any TOML type, junk keys, tables where scalars belong, and now and then text
  that is not TOML at all.

The key set comes from vocab's own schemas, so new keys are fuzzed too.  Numbers
that scale the work (clients, repeats, node counts, catalog sizes) are small, or
else far too big (those must be refused by vocab.limits).  `to_toml` writes a
document as TOML text (inline tables; dates as literals).
"""
from __future__ import annotations

import json
import re

from hypothesis import strategies as st

from vocab import cluster, scenario

CATALOG_KEYS = ("images", "seed", "prefix", "bases", "median_image_mb", "median_layers")

# the real key set, per table
TABLES = {"scenario": scenario._SCENARIO, "network": scenario._NETWORK, "daemon": scenario._DAEMON,
          "registry": cluster.REGISTRY, "distribution": cluster.DISTRIBUTION,
          "catalog": dict.fromkeys(CATALOG_KEYS), "image": scenario._IMAGE, "layer": scenario._LAYER,
          "step": scenario._STEP, "node": cluster.NODE, "rate_limit": cluster.RATE_LIMIT}
TOP_KEYS = tuple(scenario._TOP)


class TomlLiteral(str):
    """Text written into the document as it is (a date, say)."""


# -- values ---------------------------------------------------------------------------------

REFS = ["lecture/hello:1", "lecture/app", "localhost:5000/x:2", "a/b/c:latest", "Bad Ref", "x:y:z", ""]
NAMES = ["hello", "base", "app", "lib-2", "node", "lab", "Bad_Name", "", "-x"]
CHOICES = {"command": ["pull", "run", "rmi", "push", "RUN"], "arrivals": ["fixed", "poisson", "burst"],
           "popularity": ["uniform", "zipf", "pareto"], "topology": ["star", "racks", "mesh"],
           "mode": ["registry", "mirror", "p2p", "cdn"], "auth": ["none", "token", "basic"],
           "extract": ["serial", "parallel", "random"], "node": ["", "node", "lab-*", "lab-?", "[", "none"],
           "prefix": ["catalog", "hub-x", "Bad"], "description": ["", "a world", "ünïcode ✓"]}
# keys whose size is the amount of work: kept small whatever their type
WORK_KEYS = {"clients", "repeat", "count", "images", "bases", "replications", "rate_per_s",
             "duration_s", "retries", "median_layers", "rack_size", "peer_download_slots",
             "peer_upload_slots", "piece_mb", "size_mb", "median_image_mb"}

small_ints = st.integers(-2, 4)
big_ints = st.sampled_from([0, 10**6, 2**63 - 1, -(2**63)])
special_floats = st.sampled_from([0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1e-300, 1e300])
scalars = st.one_of(small_ints, st.floats(-2, 60), st.booleans(),
                    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
                    st.sampled_from(REFS + NAMES),
                    st.just(TomlLiteral("1979-05-27T07:32:00Z")), st.just(TomlLiteral("07:32:00")))
junk = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["x", "size_mb", "name", "weird key"]),
                                                inner, max_size=3)), max_leaves=6)


def plausible(key: str, kind: type | None) -> st.SearchStrategy:
    """A value that fits `key` more often than not."""
    if key in CHOICES:
        return st.sampled_from(CHOICES[key])
    if key in ("ref", "image"):
        return st.sampled_from(REFS)
    if key == "name":
        return st.sampled_from(NAMES)
    if key in ("images", "cached"):
        return st.lists(st.sampled_from(REFS + ["lecture/*", "*", "?"]), max_size=3)
    if key in WORK_KEYS:
        return st.one_of(st.integers(0, 3), st.floats(0.01, 3), st.sampled_from([-1, 0.0]),
                         st.sampled_from([10**7, 10**12, 1e300, 1e-300]))
    if kind is bool or key == "slow_start":
        return st.booleans()
    if kind is int:
        return st.one_of(small_ints, big_ints)
    if key.endswith(("_mbps", "_ms", "_s", "_mb", "_rate")) or kind is float:
        return st.one_of(st.floats(0, 60), special_floats, small_ints,
                         st.floats(0, 0.99) if key.endswith("_rate") else st.floats(0, 5))
    return scalars


@st.composite
def table(draw, name: str, extra: dict | None = None) -> dict:
    """A table of `name`'s keys: a random subset, plausible or junk values, maybe a junk key."""
    schema = TABLES[name]
    out = {}
    for key in draw(st.lists(st.sampled_from(sorted(schema)), max_size=len(schema), unique=True)):
        kind = getattr(schema[key], "kind", None)
        out[key] = draw(plausible(key, kind) if draw(st.integers(0, 9)) < 8 else junk)
    for key, strategy in (extra or {}).items():
        if draw(st.integers(0, 9)) < 9:
            out[key] = draw(strategy)
    if draw(st.integers(0, 19)) == 0:
        out[draw(st.sampled_from(["colour", "size_MB", "bandwidth", "x y"]))] = draw(junk)
    return out


def entries(name: str, low: int, high: int, extra: dict | None = None) -> st.SearchStrategy:
    return st.lists(table(name, extra), min_size=low, max_size=high)


layers = entries("layer", 1, 3, {"name": st.sampled_from(["base", "app", "lib"]),
                                 "size_mb": st.floats(0.01, 5)})
IMAGE_EXTRA = {"ref": st.sampled_from(REFS[:4]), "layers": layers}
STEP_EXTRA = {"command": st.sampled_from(["pull", "run", "rmi"]), "image": st.sampled_from(REFS[:4])}


@st.composite
def wild(draw) -> dict | str:
    """Any tables, any values: mostly refused (or, now and then, text that is not TOML)."""
    if draw(st.integers(0, 29)) == 0:
        return draw(st.sampled_from(["[scenario", "name = ", "= 1", "[[step]]\n[step]", "\x00", "a = 1\na = 2"]))
    parts = {
        "scenario": table("scenario", {"name": st.sampled_from(NAMES[:6])}),
        "network": table("network"), "daemon": table("daemon"),
        "registry": table("registry", {"rate_limit": table("rate_limit")}),
        "distribution": table("distribution"), "catalog": table("catalog", {"images": st.integers(1, 3)}),
        "image": entries("image", 1, 3, IMAGE_EXTRA), "step": entries("step", 1, 3, STEP_EXTRA),
        "node": entries("node", 1, 3, {"name": st.sampled_from(NAMES[3:6])}),
    }
    likely = {"scenario": 19, "image": 18, "step": 18, "network": 10, "daemon": 8}
    doc = {}
    for key in TOP_KEYS:
        if draw(st.integers(0, 19)) < likely.get(key, 3):
            doc[key] = draw(parts[key] if draw(st.integers(0, 19)) else junk)
    if draw(st.integers(0, 19)) == 0:
        doc[draw(st.sampled_from(["steps", "images", "Network", "meta"]))] = draw(junk)
    return doc


# -- mild documents: valid ones, then a few mutations ---------------------------------------

GOOD_REFS = ["lecture/hello:1", "lecture/app", "localhost:5000/x:2", "a/b/c:latest"]
GOOD_LAYERS = {"base": (3.0, 2.5), "app": (1.0, 1.0), "lib": (0.5, 2.0)}  # one name, one layer
rates = st.floats(0.0, 0.5)
mbps = st.one_of(st.none(), st.floats(1, 1000))


def maybe(draw, out: dict, key: str, strategy: st.SearchStrategy) -> None:
    """Set `key` half of the time (its default is used otherwise)."""
    if draw(st.booleans()):
        value = draw(strategy)
        if value is not None:
            out[key] = value


@st.composite
def valid_tables(draw) -> dict:
    doc: dict = {"scenario": {"name": draw(st.sampled_from(["hello", "x1", "a-b"]))}}
    maybe(draw, doc["scenario"], "seed", st.integers(0, 10**6))
    maybe(draw, doc["scenario"], "replications", st.integers(1, 2))
    maybe(draw, doc["scenario"], "description", st.sampled_from(CHOICES["description"]))
    network, daemon = {}, {}
    for key, strategy in (("bandwidth_mbps", mbps), ("rtt_ms", st.floats(0, 50)),
                          ("topology", st.sampled_from(["star", "racks"])),
                          ("registry_bandwidth_mbps", mbps), ("rack_size", st.integers(1, 4)),
                          ("rack_uplink_mbps", mbps), ("public_ips", st.integers(1, 3)),
                          ("slow_start", st.booleans())):
        maybe(draw, network, key, strategy)
    for key, strategy in (("max_concurrent_downloads", st.integers(1, 4)),
                          ("max_download_attempts", st.integers(1, 5)),
                          ("extract", st.sampled_from(["serial", "parallel"])),
                          ("cores", st.integers(1, 4)), ("api_workers", st.integers(1, 4))):
        maybe(draw, daemon, key, strategy)
    doc["network"], doc["daemon"] = network, daemon
    if draw(st.booleans()):
        registry: dict = {}
        for key, strategy in (("workers", st.integers(1, 4)), ("request_ms", st.floats(0, 10)),
                              ("auth", st.sampled_from(["none", "token"])),
                              ("rate_limit", st.fixed_dictionaries({"pulls": st.integers(1, 5),
                                                                    "window_s": st.floats(1, 100)})),
                              ("error_rate", rates), ("reset_rate", rates)):
            maybe(draw, registry, key, strategy)
        doc["registry"] = registry
    if draw(st.booleans()):
        distribution: dict = {}
        for key, strategy in (("mode", st.sampled_from(["registry", "mirror", "p2p"])),
                              ("mirror_bandwidth_mbps", mbps), ("peer_upload_mbps", mbps),
                              ("piece_mb", st.floats(0.5, 8)), ("peer_upload_slots", st.integers(1, 4)),
                              ("peer_download_slots", st.integers(1, 4))):
            maybe(draw, distribution, key, strategy)
        doc["distribution"] = distribution
    return doc


@st.composite
def valid_world(draw) -> dict:
    doc = draw(valid_tables())
    refs = draw(st.lists(st.sampled_from(GOOD_REFS), min_size=1, max_size=3, unique=True))
    doc["image"] = []
    for ref in refs:
        names = draw(st.lists(st.sampled_from(sorted(GOOD_LAYERS)), min_size=1, max_size=3, unique=True))
        doc["image"].append({"ref": ref, "layers": [
            {"name": n, "size_mb": GOOD_LAYERS[n][0], "compression": GOOD_LAYERS[n][1]} for n in names]})
    declared = [scenario.normalise_ref(ref) for ref in refs]
    if draw(st.integers(0, 9)) == 0:
        doc["catalog"] = {"images": draw(st.integers(1, 3)), "median_image_mb": draw(st.floats(1, 30)),
                          "median_layers": draw(st.floats(2, 5))}
        declared += [f"catalog/app-{i}:1" for i in range(doc["catalog"]["images"])]
    node_names = ["node"]
    if draw(st.integers(0, 3)) == 0:
        doc["node"] = []
        for name in draw(st.lists(st.sampled_from(["lab", "edge", "core"]), min_size=1, max_size=2, unique=True)):
            node: dict = {"name": name}
            maybe(draw, node, "count", st.integers(1, 3))
            maybe(draw, node, "bandwidth_mbps", st.floats(1, 1000))
            maybe(draw, node, "latency_ms", st.floats(0, 20))
            maybe(draw, node, "cache_mb", st.floats(1, 50))
            maybe(draw, node, "cached", st.lists(st.sampled_from(declared), max_size=2, unique=True))
            doc["node"].append(node)
        node_names = [n["name"] for n in doc["node"]]
    doc["step"] = [draw(valid_step(declared, node_names)) for _ in range(draw(st.integers(1, 3)))]
    return doc


@st.composite
def valid_step(draw, declared: list[str], node_names: list[str]) -> dict:
    step: dict = {"command": draw(st.sampled_from(["pull", "run", "rmi"]))}
    if draw(st.integers(0, 3)) == 0:
        step["images"] = draw(st.lists(st.sampled_from(declared), min_size=1, max_size=3, unique=True))
        if draw(st.booleans()):
            step["popularity"] = "zipf"
            maybe(draw, step, "zipf_s", st.floats(0.5, 2))
    else:
        step["image"] = draw(st.sampled_from(declared))
    maybe(draw, step, "at_s", st.floats(0, 5))
    maybe(draw, step, "clients", st.integers(1, 3))
    maybe(draw, step, "run_s", st.floats(0, 2))
    maybe(draw, step, "retries", st.integers(0, 2))
    maybe(draw, step, "node", st.sampled_from([n + "*" for n in node_names] + [node_names[0]]))
    if draw(st.integers(0, 4)) == 0:
        step.update(arrivals="poisson", rate_per_s=draw(st.floats(0.1, 2)), duration_s=draw(st.floats(0.5, 3)))
    else:
        maybe(draw, step, "repeat", st.integers(1, 2))
    return step


def locations(value) -> list[tuple]:
    """Every (container, key) in a document, nested ones included."""
    found = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        found.append((value, key))
        found += locations(inner)
    return found


@st.composite
def mild(draw) -> dict:
    """A valid document with up to two mutations: a value replaced by junk or by a
    value plausible for another key, a key deleted, a junk key added."""
    doc = draw(valid_world())
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2]))):
        spots = locations(doc)
        container, key = draw(st.sampled_from(spots))
        action = draw(st.sampled_from(["junk", "plausible", "delete", "add"]))
        if action == "delete" and isinstance(container, dict):
            del container[key]
        elif action == "add" and isinstance(container, dict):
            container[draw(st.sampled_from(["colour", "size_MB", "x y", "images", "node"]))] = draw(junk)
        elif action == "plausible" and isinstance(key, str):
            container[key] = draw(plausible(key, None))
        else:
            container[key] = draw(junk)
    return doc


documents = st.one_of(mild(), wild())


# -- writing TOML -------------------------------------------------------------------------------

def toml_value(value) -> str:
    if isinstance(value, TomlLiteral):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # nan, inf, -inf and 1e+300 are TOML too
    if isinstance(value, str):  # JSON's escapes are TOML's, but TOML wants DEL escaped too
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_value(key)


def to_toml(doc: dict | str) -> str:
    if isinstance(doc, str):
        return doc
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in doc.items())
