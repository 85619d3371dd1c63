"""Processor sharing: work that slows down when more of it runs at once.

What it models: a daemon's container operations (create, start, the reaping
of an exit, remove) are mostly CPU work -- dockerd's Go handlers, containerd,
the shim and runc, or docksim's daemon and the processes it forks -- and the
machine has only so many CPUs to run them.  Ten `docker run`s sent at the same
moment do not each take as long as one alone: on the 2-vCPU reference machine,
dockerd's start took 80 ms alone and 160 ms with four at once.

The discipline is egalitarian processor sharing with a capacity of ``c``
operations at full speed: while ``n`` operations run, each progresses at rate
``min(1, c / n)``.  An operation of ``w`` seconds alone therefore takes ``w``
while ``n <= c``, and ``n w / c`` when ``n`` of them start together and all
need the same.  ``c`` is not a CPU count but the engine's effective
parallelism on this machine (locks, the Python GIL and the work done outside
the daemon all count), which `calibrate` measures with concurrent runs of its
own; ``c = inf`` turns sharing off.

Left out: the order in which the OS serves them.  Real schedulers are less
fair than this: of ten runs sent at once, some start well before the
modelled common finish and some after (README, "Where the model is still
wrong").
"""
from __future__ import annotations

import math

import simpy

# Remaining work below this many seconds counts as done: rates and times are
# floats, and a job must not wait for a timer of a femtosecond.
_DONE_S = 1e-12


class ProcessorSharing:
    """Operations sharing ``capacity`` full-speed slots; see the module docstring."""

    def __init__(self, env: simpy.Environment, capacity: float):
        if not capacity > 0:
            raise ValueError(f"processor sharing needs a capacity > 0, not {capacity}")
        self.env = env
        self.capacity = capacity
        self._left_s: dict[simpy.Event, float] = {}  # running operation -> its work left
        self._since_s = env.now                      # when _left_s was last brought up to date
        self._epoch = 0                              # invalidates timers set before a change

    @property
    def running(self) -> int:
        """How many operations are in progress."""
        return len(self._left_s)

    def _rate(self) -> float:
        return min(1.0, self.capacity / len(self._left_s)) if self._left_s else 0.0

    def _catch_up(self) -> None:
        """Subtract the work done since the last change from every operation."""
        done_s = (self.env.now - self._since_s) * self._rate()
        if done_s:
            for job in self._left_s:
                self._left_s[job] -= done_s
        self._since_s = self.env.now

    def _schedule(self) -> None:
        """Set a timer for the next operation to finish at the current rate."""
        self._epoch += 1
        if not self._left_s:
            return
        epoch = self._epoch
        timer = self.env.timeout(max(0.0, min(self._left_s.values())) / self._rate())
        timer.callbacks.append(lambda _event: self._finish(epoch))

    def _finish(self, epoch: int) -> None:
        if epoch != self._epoch:
            return  # an operation came or went since this timer was set
        self._catch_up()
        for job, left_s in list(self._left_s.items()):
            if left_s <= _DONE_S:
                del self._left_s[job]
                job.succeed()
        self._schedule()

    def work(self, seconds: float):
        """SimPy generator: ``seconds`` of work (as long as it takes alone),
        done at the shared rate."""
        if seconds <= 0:
            return
        if math.isinf(self.capacity):
            yield self.env.timeout(seconds)
            return
        self._catch_up()
        finished = self.env.event()
        self._left_s[finished] = seconds
        self._schedule()
        yield finished
