"""Ceilings on how much work one scenario may ask for.

Validation accepts any positive count, and without a ceiling a slip of the
keyboard (``clients = 10000000``, ``duration_s = 1e300``, ``count = 1e9`` nodes)
would make ``simulate.py run`` compute for days or run out of memory instead of
saying what is wrong.  The ceilings are far above every scenario shipped (the
largest asks for about 1,500 requests, on 100 nodes) and above the cluster
scale docksim is meant for (a thousand nodes, a Docker-Hub-sized catalog):

* requests: clients x nodes x repeat (or x rate_per_s x duration_s, the
  expected number of Poisson arrivals), over all steps and replications;
* nodes, replications, catalog images and bases;
* a layer's size (a terabyte), and in peer-to-peer mode the pieces one layer
  is cut into (each piece is a record, and a transfer per node, in the model:
  10,000 pieces on three nodes take seconds to simulate).

Each check returns a problem sentence (as ``vocab.schema`` checks do) or None.
"""
from __future__ import annotations

import math
from typing import Callable

MAX_REQUESTS = 1_000_000
MAX_NODES = 100_000
MAX_REPLICATIONS = 10_000
MAX_CATALOG_IMAGES = 100_000
MAX_LAYER_MB = 1_000_000.0          # one terabyte
MAX_PIECES_PER_LAYER = 10_000     # a 40 GB layer in 4 MB pieces


def _number(value: float) -> str:
    """1000000 -> '1,000,000'; 0.5 -> '0.5'."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def between(low: float, high: float) -> Callable[[float], str | None]:
    """A field check: at least `low` and at most `high`."""
    def check(value: float) -> str | None:
        if value < low:
            return f"must be at least {_number(low)}, not {value}"
        if value > high:
            return f"must be at most {_number(high)}, not {value}"
        return None
    return check


def positive_at_most(high: float) -> Callable[[float], str | None]:
    """A field check: greater than 0 and at most `high`."""
    def check(value: float) -> str | None:
        if not value > 0:
            return f"must be greater than 0, not {value}"
        if value > high:
            return f"must be at most {_number(high)}, not {value}"
        return None
    return check


def step_requests(clients: int, nodes: int, arrivals: str, repeat: int,
                  rate_per_s: float | None, duration_s: float | None) -> float:
    """How many requests one step issues in one replication (expected, for Poisson)."""
    if arrivals == "poisson":
        return clients * nodes * rate_per_s * duration_s
    return clients * nodes * repeat


def too_many_requests(total: float) -> str | None:
    if total <= MAX_REQUESTS:
        return None
    shown = f"{total:.3g}" if math.isfinite(total) else "infinitely many"
    return (f"the scenario asks for {shown} requests (clients x nodes x repeat, or x "
            f"rate_per_s x duration_s, over all steps and replications); at most "
            f"{MAX_REQUESTS:,} are simulated")


def too_many_pieces(size_bytes: int, piece_bytes: int, layer: str) -> str | None:
    pieces = math.ceil(size_bytes / max(1, piece_bytes))
    if pieces <= MAX_PIECES_PER_LAYER:
        return None
    return (f"layer {layer!r} would be cut into {pieces:,} pieces; at most "
            f"{MAX_PIECES_PER_LAYER:,} (a larger piece_mb)")
