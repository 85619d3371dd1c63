"""How many points one job carries, so that a pool's or Dask's per-job cost stays small.

A job of one point costs a pool about a millisecond of pickling and messages
(Dask a few ms), while a small scenario's point simulates in a few ms: sent
one by one, overhead would eat much of the gain.  The batcher learns the cost
of a point from the first jobs (sent one point each) and then sizes jobs to
last about ``TARGET_JOB_S``.  Near the end, jobs shrink again so that every
worker finishes at about the same time, and a Ctrl-C loses at most the jobs
in flight, a fraction of a second of work each.  Batching never changes
results: every point carries its own seeds.
"""
from __future__ import annotations

TARGET_JOB_S = 0.1
MAX_POINTS = 200


class Batcher:
    def __init__(self, workers: int, target_s: float = TARGET_JOB_S, max_points: int = MAX_POINTS):
        self.workers = max(1, workers)
        self.target_s = target_s
        self.max_points = max_points
        self._points = 0
        self._seconds = 0.0

    def observe(self, records: list[dict]) -> None:
        """Learn from finished records (their ``elapsed_s``, measured in the worker)."""
        self._points += len(records)
        self._seconds += sum(record.get("elapsed_s", 0.0) for record in records)

    def size(self, remaining: int) -> int:
        """Points for the next job, when ``remaining`` points wait to be sent."""
        if self._points < self.workers:  # nothing learnt yet: one point each
            return 1
        per_point_s = max(self._seconds / self._points, 1e-6)
        ideal = int(self.target_s / per_point_s)
        tail = remaining // (2 * self.workers)  # the last jobs small, so workers end together
        return max(1, min(ideal, tail, self.max_points))
