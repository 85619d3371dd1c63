"""Transfers as fluid flows over a network of links, shared max-min fairly.

What it models: every byte stream of the world -- a layer blob from the
registry, a piece from a peer, a blob through a mirror -- is a *flow* along a
path of links (``model/topology.py``).  While the set of flows stays the same,
their rates are constant: the max-min fair allocation of ``model/fairshare.py``.
So the model needs an event only when a flow starts or ends, never per byte:

    remaining_f(t) = remaining_f(t_f) - r_f * (t - t_f)              (5)
    finish_f       = t_f + remaining_f(t_f) / r_f                     (6)
    next event     = min_f finish_f                                   (7)

where t_f is the last time flow f's rate changed.  Equation (5) is applied
lazily, only to flows whose rate changes, and one SimPy timer is armed for
(7): when it fires, every flow within ``SIMULTANEOUS_S`` of it ends.  A timer
made obsolete is disarmed (its callback removed) and fires as a no-op.

Cost: flows that start or end at the same instant are handled together (one
recomputation per instant, after every other event of that instant).  Only
the *connected component* of the changed links is recomputed -- flows that
share no finite link with a changed flow keep their rates -- in plain Python
while it is small, and vectorised over all flows once it is large (a
thousand nodes behind one saturated registry uplink form one component).
That large case has a shortcut: with n_l flows on link l, if the link of
largest n_l / c_l carries every flow, all flows get the same rate

    r = c_l* / n   where l* = argmax_l n_l / c_l  and  n_l* = n         (4a)

which satisfies (1) and (2) at once -- l* is full and no flow on it is
faster.  The argmax is kept in a heap updated when a flow comes or goes, so
the shortcut costs a few vectorised passes over the flows' bytes and no
progressive filling.

What is left out: TCP's own dynamics (loss, RTT unfairness, congestion
control variants) -- flows reach their fair share at once; slow start is
charged separately as a delay (``model/tcp.py``); links are full duplex and
switches never block.
"""
from __future__ import annotations

import heapq
import math
from typing import Sequence

import numpy as np
import simpy

from model.fairshare import max_min_rates, max_min_rates_np

SIMULTANEOUS_S = 1e-9        # completions closer than a nanosecond are one instant
SMALL_COMPONENT = 64         # flows; above it, recompute everything with numpy
_AFTER_NORMAL = 2            # SimPy priority: after every ordinary event of an instant
_MAX_PATH = 8


class FlowNetwork:
    """Flows over links of fixed capacities (bytes/s); see the module's equations.

    Storage: the flows in flight are rows 0 .. n-1 of a few numpy arrays
    (a finished flow's row is filled with the last one), so every vectorised
    step works on contiguous slices.
    """

    def __init__(self, env: simpy.Environment, capacity_Bps: Sequence[float]):
        if any(not c > 0 for c in capacity_Bps):
            raise ValueError("link capacities must be positive")
        self.env = env
        self.capacity_Bps = np.asarray(capacity_Bps, dtype=float)
        self._capacity = _Capacities(self.capacity_Bps)
        self._load_heap: list[tuple[float, int]] = []   # (-n_l / c_l, l), lazily updated
        self._on_link: list[set[int]] = [set() for _ in capacity_Bps]
        self._n = 0
        self._paths = np.full((0, _MAX_PATH), -1, dtype=np.int64)
        self._remaining = np.zeros(0)
        self._since_s = np.zeros(0)
        self._rate = np.zeros(0)
        self._finish_s = np.zeros(0)
        self._seq = np.zeros(0, dtype=np.int64)    # arrival order, to end ties in order
        self._links: list[tuple[int, ...]] = []
        self._done: list[simpy.Event] = []
        self._grow(64)
        self._arrivals = 0
        self._width = 1                   # the longest path so far
        self._dirty: set[int] = set()     # links whose flows changed
        self._stale: set[int] = set()     # rows of flows that have no rate yet
        self._pending: simpy.Event | None = None
        self._timer: simpy.Event | None = None
        self._timer_s = math.inf
        self.recomputations = 0           # for tests and benchmarks
        self.global_recomputations = 0
        self.timer_firings = 0

    @property
    def in_flight(self) -> int:
        return self._n

    def transfer(self, links: Sequence[int], size_bytes: float) -> simpy.Event:
        """Move ``size_bytes`` along ``links`` (finite links only); succeeds when done."""
        done = self.env.event()
        if size_bytes <= 0 or not links:
            done.succeed()
            return done
        if len(links) > _MAX_PATH:
            raise ValueError(f"a path of {len(links)} links is longer than {_MAX_PATH}")
        if self._n == len(self._remaining):
            self._grow(self._n)
        row = self._n
        self._n += 1
        self._links[row] = tuple(links)
        self._done[row] = done
        self._paths[row, :] = -1
        self._paths[row, :len(links)] = links
        self._width = max(self._width, len(links))
        self._remaining[row] = float(size_bytes)
        self._since_s[row] = self.env.now
        self._rate[row] = 0.0
        self._finish_s[row] = np.inf
        self._seq[row] = self._arrivals
        self._arrivals += 1
        for link in links:
            self._on_link[link].add(row)
            self._note_load(link)
        self._stale.add(row)
        self._dirty.update(links)
        self._schedule()
        return done

    def rate_Bps(self, event: simpy.Event) -> float:
        """The current rate of the flow that ``event`` belongs to (for tests)."""
        return float(self._rate[self._done.index(event, 0, self._n)])

    # -- bookkeeping ---------------------------------------------------------------
    def _grow(self, more: int) -> None:
        self._paths = np.vstack([self._paths, np.full((more, _MAX_PATH), -1, dtype=np.int64)])
        for name in ("_remaining", "_since_s", "_rate"):
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(more)]))
        self._finish_s = np.concatenate([self._finish_s, np.full(more, np.inf)])
        self._seq = np.concatenate([self._seq, np.zeros(more, dtype=np.int64)])
        self._links += [()] * more
        self._done += [None] * more  # type: ignore[list-item]

    def _remove(self, row: int) -> None:
        """Forget a finished flow; the last row moves into its place."""
        for link in self._links[row]:
            self._on_link[link].discard(row)
            self._dirty.add(link)
            self._note_load(link)
        last = self._n - 1
        if row != last:
            for link in self._links[last]:
                self._on_link[link].discard(last)
                self._on_link[link].add(row)
            for array in (self._paths, self._remaining, self._since_s, self._rate,
                          self._finish_s, self._seq):
                array[row] = array[last]
            self._links[row] = self._links[last]
            self._done[row] = self._done[last]
            if last in self._stale:
                self._stale.discard(last)
                self._stale.add(row)
        self._links[last] = ()
        self._done[last] = None  # type: ignore[call-overload]
        self._finish_s[last] = np.inf
        self._n = last

    def _note_load(self, link: int) -> None:
        """Keep the heap of n_l / c_l current for (4a); stale entries go when on top."""
        heap = self._load_heap
        if len(heap) > 4 * len(self._on_link) + 1024:
            heap[:] = [(-len(flows) / c, l) for l, (flows, c) in
                       enumerate(zip(self._on_link, self._capacity.values)) if flows]
            heapq.heapify(heap)
        else:
            heapq.heappush(heap, (-len(self._on_link[link]) / self._capacity.values[link], link))

    def _uniform_rate(self) -> float | None:
        """Equation (4a): the one rate of all flows, when one link binds them all."""
        heap, values = self._load_heap, self._capacity.values
        while heap:
            load, link = heap[0]
            flows = len(self._on_link[link])
            if flows and -load == flows / values[link]:
                return values[link] / flows if flows == self._n else None
            heapq.heappop(heap)
        return None

    def _schedule(self) -> None:
        """Recompute once, after everything else that happens at this instant."""
        if self._pending is None:
            self._pending = _AtEndOfInstant(self.env, self._recompute)

    def _component(self) -> list[int] | None:
        """Rows sharing finite links, transitively, with the changed links; None if large."""
        if any(len(self._on_link[link]) > SMALL_COMPONENT for link in self._dirty):
            return None
        flows: set[int] = set(self._stale)
        seen_links = set(self._dirty)
        queue = list(self._dirty)
        while queue:
            for row in self._on_link[queue.pop()]:
                if row in flows:
                    continue
                flows.add(row)
                if len(flows) > SMALL_COMPONENT:
                    return None
                for link in self._links[row]:
                    if link not in seen_links:
                        seen_links.add(link)
                        queue.append(link)
        return sorted(flows)

    def _recompute(self, _event: simpy.Event) -> None:
        self._pending = None
        now, n = self.env.now, self._n
        component = self._component()
        self._dirty.clear()
        self._stale.clear()
        if component == []:
            self._arm()   # the changed links carry nothing any more
            return
        self.recomputations += 1
        if component is None:
            self.global_recomputations += 1
            rows: slice | np.ndarray = slice(0, n)
            uniform = self._uniform_rate()
            if uniform is not None:
                rates = np.full(n, uniform)
            else:
                rates = max_min_rates_np(self._paths[:n, :self._width], self.capacity_Bps)
        else:
            rates = np.array(max_min_rates([self._links[r] for r in component], self._capacity))
            rows = np.array(component, dtype=np.int64)
        # Equation (5) for the flows whose rate may change, then (6).  Every
        # flow crosses a finite link, so its rate is finite and positive (a
        # new flow's rate is 0 until now, so it has moved nothing yet).
        self._remaining[rows] -= self._rate[rows] * (now - self._since_s[rows])
        self._since_s[rows] = now
        self._rate[rows] = rates
        self._finish_s[rows] = now + np.maximum(self._remaining[rows], 0.0) / rates
        self._arm()

    def _arm(self) -> None:
        """Equation (7): keep exactly one live timer, for the earliest finish."""
        next_s = float(self._finish_s[:self._n].min()) if self._n else math.inf
        if next_s == self._timer_s:
            return
        if self._timer is not None:
            self._timer.callbacks.remove(self._on_timer)
            self._timer = None
        self._timer_s = next_s
        if next_s < math.inf:
            self._timer = self.env.timeout(max(0.0, next_s - self.env.now))
            self._timer.callbacks.append(self._on_timer)

    def _on_timer(self, _event: simpy.Event) -> None:
        """Finish every flow due now, in arrival order; the others share what they free."""
        self._timer = None
        self._timer_s = math.inf
        self.timer_firings += 1
        due = np.nonzero(self._finish_s[:self._n] <= self.env.now + SIMULTANEOUS_S)[0]
        done = [self._done[row] for row in due[np.argsort(self._seq[due])].tolist()]
        for row in sorted(due.tolist(), reverse=True):  # the last rows first: moves stay valid
            self._remove(row)
        for event in done:
            event.succeed()
        if self._dirty:
            self._schedule()
        else:
            self._arm()


class _AtEndOfInstant(simpy.Event):
    """An event already triggered, processed after every ordinary event of this instant.

    (SimPy's own Timeout is built the same way, with the normal priority.)
    """

    def __init__(self, env: simpy.Environment, callback):
        super().__init__(env)
        self.callbacks.append(callback)
        self._ok = True
        self._value = None
        env.schedule(self, priority=_AFTER_NORMAL)


class _Capacities:
    """A read-only mapping view of the capacity array, for ``max_min_rates``."""

    def __init__(self, capacity_Bps: np.ndarray):
        self.values = capacity_Bps.tolist()

    def get(self, link: int, default: float) -> float:
        return self.values[link]
