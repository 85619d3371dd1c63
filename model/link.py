"""The registry->node link: concurrent layer downloads share its bandwidth.

What it models: every blob GET of a pull is one TCP stream over the same
bottleneck (a shaped interface, or loopback).  Long-lived TCP streams through
one bottleneck converge to equal shares, so the link is a *processor-sharing*
server of capacity C bytes/s: with N transfers in flight each one moves at

    r = C / N                                                     (1)

Between two instants where N changes the rates are constant, so the model
needs events only when a transfer starts or ends -- never per byte or chunk.
At such an instant t the bookkeeping is

    remaining_i(t) = remaining_i(t_last) - r_i * (t - t_last)     (2)
    next completion = t + min_i remaining_i(t) / r_i              (3)

and a single pending timer is (re)armed for (3).  A timer made obsolete by an
arrival is disarmed (its callback removed), so it fires as a no-op: SimPy
cannot take an event out of its queue, but only one timer is ever live.

Generalising: a flow has a ``path`` (here always the one link).  To model a
network -- registries, mirrors, switches, 1,000 nodes as a networkx graph --
subclass ``Link`` (or write its sibling) and override ``_allocate`` with
max-min fairness by progressive filling over the edges of the paths.
Equations (2) and (3) and the timer logic stay exactly as they are.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

import simpy

# Two completions closer than this are treated as simultaneous, so that equal
# transfers end together despite floating-point residue in (2).
_SIMULTANEOUS_S = 1e-12


@dataclass(eq=False)
class Flow:
    """One transfer in flight: its bytes still to move, its current rate."""

    size_bytes: float
    remaining_bytes: float
    done: simpy.Event
    path: tuple[Hashable, ...] = ()
    rate_Bps: float = 0.0

    def time_left_s(self) -> float:
        if self.remaining_bytes <= 0:
            return 0.0
        return self.remaining_bytes / self.rate_Bps


class Link:
    """A processor-sharing link of `capacity_Bps` (math.inf: transfers take no time)."""

    def __init__(self, env: simpy.Environment, capacity_Bps: float,
                 name: Hashable = "registry->node"):
        if not capacity_Bps > 0:
            raise ValueError(f"link capacity must be positive, not {capacity_Bps}")
        self.env = env
        self.capacity_Bps = capacity_Bps
        self.name = name
        self._flows: list[Flow] = []        # arrival order, so ties resolve deterministically
        self._updated_s = env.now           # when remaining_bytes were last brought up to date
        self._timer: simpy.Event | None = None  # the one armed "next completion"
        self._finishing: list[Flow] = []    # the flows that complete when it fires

    @property
    def in_flight(self) -> int:
        return len(self._flows)

    def transfer(self, size_bytes: float) -> simpy.Event:
        """Start moving `size_bytes`; the returned event succeeds when the last byte arrived."""
        done = self.env.event()
        if size_bytes <= 0:
            done.succeed()
            return done
        self._advance()
        self._flows.append(Flow(size_bytes, float(size_bytes), done, (self.name,)))
        self._reallocate()
        return done

    def _allocate(self) -> None:
        """Set every flow's rate: equation (1).  Override for other sharing rules."""
        share_Bps = self.capacity_Bps / len(self._flows)
        for flow in self._flows:
            flow.rate_Bps = share_Bps

    def _advance(self) -> None:
        """Equation (2): charge the bytes moved since the last change of rates."""
        elapsed_s = self.env.now - self._updated_s
        self._updated_s = self.env.now
        if elapsed_s <= 0:
            return  # also avoids inf * 0 on an unlimited link
        for flow in self._flows:
            flow.remaining_bytes -= flow.rate_Bps * elapsed_s

    def _reallocate(self) -> None:
        """Rates changed (a flow came or went): recompute them and re-arm the timer."""
        if self._timer is not None:
            self._timer.callbacks.remove(self._on_timer)  # disarm: it will fire as a no-op
            self._timer = None
        if not self._flows:
            return
        self._allocate()
        times_s = [flow.time_left_s() for flow in self._flows]
        next_s = min(times_s)
        # Which flows end at that instant is decided now, while the rates are
        # known exactly, rather than by testing a float residue for zero later.
        self._finishing = [flow for flow, t in zip(self._flows, times_s)
                           if t <= next_s + _SIMULTANEOUS_S]
        self._timer = self.env.timeout(next_s)
        self._timer.callbacks.append(self._on_timer)

    def _on_timer(self, _event: simpy.Event) -> None:
        """Equation (3) came true: finish the flows due now, share among the rest."""
        self._timer = None
        self._advance()
        finishing = set(map(id, self._finishing))
        self._flows = [flow for flow in self._flows if id(flow) not in finishing]
        for flow in self._finishing:
            flow.remaining_bytes = 0.0
            flow.done.succeed()
        self._finishing = []
        self._reallocate()

