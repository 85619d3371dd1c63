"""Max-min fair rates of flows over a network of links: progressive filling.

What it models: many long-lived TCP streams crossing shared links converge,
to a first approximation, to the *max-min fair* allocation -- no flow can go
faster without slowing a flow that is already as slow or slower.  (Real TCP
is only roughly fair: it favours short round trips, and congestion control
algorithms differ; see ``model/flows.py`` for what is left out.)

Notation: links l with capacity c_l (bytes/s), flows f with a path P_f (the
links they cross), rates r_f.  The allocation is

    feasible:   sum_{f : l in P_f} r_f <= c_l            for every link l   (1)
    max-min:    every flow f has a bottleneck l in P_f with
                sum_{g : l in P_g} r_g = c_l  and  r_f = max_{g : l in P_g} r_g   (2)

Progressive filling computes it: raise every unfrozen flow's rate together;
when a link fills, freeze the flows crossing it.  With c'_l the capacity not
yet used by frozen flows and n_l the unfrozen flows on l, each round is

    m = min_l c'_l / n_l                                              (3)
    every unfrozen flow on a link with c'_l / n_l = m gets r_f = m
    for each newly frozen f and each l in P_f:  c'_l -= m,  n_l -= 1  (4)

A round freezes at least one link's flows, so there are at most as many rounds
as distinct rates, and a round costs O(sum of path lengths): the whole
computation is O(rounds x flows), never a product of flows with flows.

Two implementations of the same equations: ``max_min_rates`` in plain Python
(for the small groups of flows a network event usually touches) and
``max_min_rates_np`` vectorised with numpy (for large groups, such as a
thousand nodes pulling through one registry uplink).  A flow whose path has
no finite link gets an infinite rate.
"""
from __future__ import annotations

import math
from typing import Hashable, Mapping, Sequence

import numpy as np

# Links whose fair shares differ by less than this relative amount fill in the
# same round, so equal flows stay exactly equal despite rounding.
_SAME_LEVEL = 1e-12


def max_min_rates(paths: Sequence[Sequence[Hashable]],
                  capacity_Bps: Mapping[Hashable, float]) -> list[float]:
    """Rates (bytes/s) of flows with these paths; equations (3) and (4).

    ``paths[f]`` lists the links flow f crosses; links missing from
    ``capacity_Bps`` (or with an infinite capacity) do not constrain.
    """
    rates = [math.inf] * len(paths)
    left: dict[Hashable, float] = {}
    flows_on: dict[Hashable, list[int]] = {}
    for f, path in enumerate(paths):
        for link in path:
            cap = capacity_Bps.get(link, math.inf)
            if cap < math.inf:
                left[link] = cap
                flows_on.setdefault(link, []).append(f)
    count = {link: len(flows) for link, flows in flows_on.items()}
    frozen = [False] * len(paths)
    while count:
        level = min(left[link] / n for link, n in count.items())
        full = [link for link, n in count.items() if left[link] / n <= level * (1 + _SAME_LEVEL)]
        for link in full:
            for f in flows_on[link]:
                if frozen[f]:
                    continue
                frozen[f] = True
                rates[f] = level
                for other in paths[f]:
                    if other in count:
                        left[other] -= level
                        count[other] -= 1
        for link in [link for link, n in count.items() if n <= 0]:
            del count[link]
    return rates


def max_min_rates_np(paths: np.ndarray, capacity_Bps: np.ndarray) -> np.ndarray:
    """The same allocation, vectorised.

    ``paths`` is an (F, P) integer array of link indices into ``capacity_Bps``,
    padded with -1; every listed link must have a finite capacity.
    """
    n_flows = len(paths)
    rates = np.full(n_flows, np.inf)
    valid = paths >= 0
    entry_flow = np.nonzero(valid)[0]
    entry_link = paths[valid]
    n_links = len(capacity_Bps)
    left = np.array(capacity_Bps, dtype=float)
    count = np.bincount(entry_link, minlength=n_links).astype(float)
    unfrozen = np.zeros(n_flows, dtype=bool)
    unfrozen[entry_flow] = True
    while entry_flow.size:
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(count > 0, left / count, np.inf)
        level = share.min()
        full = share <= level * (1 + _SAME_LEVEL)
        hit = np.zeros(n_flows, dtype=bool)
        hit[entry_flow[full[entry_link]]] = True
        hit &= unfrozen
        rates[hit] = level
        unfrozen &= ~hit
        if not unfrozen.any():
            break
        leaving = hit[entry_flow]
        freed = np.bincount(entry_link[leaving], minlength=n_links)
        count -= freed
        left -= level * freed
        entry_flow, entry_link = entry_flow[~leaving], entry_link[~leaving]
    return rates
