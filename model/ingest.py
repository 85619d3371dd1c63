"""Pulls of one image at once: the manifest's write lock.

What it models: dockerd (20.10, over containerd 1.6) writes each manifest it
fetches into containerd's content store under an ingest reference named after
the manifest's digest, and the first pull holds that reference until it is
done.  A second pull of the same image finds the reference locked and
retries: ten tries with random back-offs of up to 1, 2, 4 ... 512 ms (about
half a second in all), and all of that inside containerd's metadata database's
write transaction, of which there is one at a time.  Then it gives up on
caching the manifest and fetches it from the registry again.  So with a third
pull the retries run one after another, and every pull's own write into the
database waits for the retries under way:

* the first pull writes its manifest once the first other pull's retries end;
* each other pull retries in turn, then resolves, then writes once the
  retries under way (its own or the next pull's) have ended.

Seen from a client, each pull's `resolve` (sending the pull -> the first layer
status) grows by about half a second per other pull.  ``manifest_lock_wait_s``
is how long one pull's retries take (calibration measures it,
harness/calibrate_ingest.py); at 0, as on docksim's daemon, whose concurrent
pulls of one image simply share their layers, nothing here takes any time.
"""
from __future__ import annotations

import simpy

# The database serves writes ahead of retry loops: when a pull's retries end,
# the write that was waiting for them (the first pull's) goes first, and only
# then do the next pull's retries begin -- the order seen in dockerd's log.
_WRITE, _RETRIES = 0, 1


class ManifestIngest:
    """One daemon's manifest writes; see the module docstring."""

    def __init__(self, env: simpy.Environment, wait_s: float):
        self.env = env
        self.wait_s = wait_s
        self.database = simpy.PriorityResource(env, capacity=1)
        self._holders: dict[str, object] = {}  # image ref -> the pull holding its reference

    def begin(self, ref: str, pull: object):
        """SimPy generator, before `pull` (any token) of image `ref` resolves: it
        holds the reference, or spends its retries when another pull does."""
        holder = self._holders.setdefault(ref, pull)
        if holder is not pull and self.wait_s > 0:
            yield from self._hold(_RETRIES, self.wait_s)

    def write(self):
        """SimPy generator, once the manifest is fetched: the pull's write into
        the database, after any retries under way."""
        if self.wait_s > 0:
            yield from self._hold(_WRITE, 0.0)

    def end(self, ref: str, pull: object) -> None:
        """`pull` of `ref` is over (done or failed): if it held the reference,
        the reference is free."""
        if self._holders.get(ref) is pull:
            del self._holders[ref]

    def _hold(self, priority: int, seconds: float):
        with self.database.request(priority=priority) as turn:
            yield turn
            if seconds:
                yield self.env.timeout(seconds)
