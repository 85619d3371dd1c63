"""Faults the registry commits on purpose, for tests of the clients' recovery.

Real registries drop connections (a load balancer's idle timeout, a restart
under a pull), and dockerd answers with its retries and Range resumes.  To test
that without a flaky network, the server can be told to misbehave:

- `cut_after_bytes=N, times=K`: the first K blob bodies that reach N bytes are
  cut there (the connection is closed), so the client holds N more bytes of the
  blob each time and must resume.  Manifests and other small JSON answers are
  never cut.  `match` limits the cuts to requests whose path contains it (a
  digest, say), so that concurrent downloads do not race for the fault.

`RegistryServer(..., faults=Faults(...))` or `--fail-once-after N` on the
command line.  A later version can add refused connections, 5xx answers,
stalls and slow starts here; the server asks only `cut_point()`.
"""
from __future__ import annotations

import threading


class Faults:
    def __init__(self, cut_after_bytes: int | None = None, times: int = 1, match: str = ""):
        if cut_after_bytes is not None and cut_after_bytes < 0:
            raise ValueError("cut_after_bytes must be at least 0")
        if times < 0:
            raise ValueError("times must be at least 0")
        self.cut_after_bytes = cut_after_bytes
        self.match = match
        self._left = times if cut_after_bytes is not None else 0
        self._lock = threading.Lock()
        self.cuts = 0  # how many bodies were cut so far

    def cut_point(self, body_bytes: int, path: str = "") -> int | None:
        """For a blob body of `body_bytes` asked for by `path`: where to cut it, or
        None to send it whole.  Each cut that will happen uses up one of the `times`."""
        with self._lock:
            if not self._left or self.cut_after_bytes is None or body_bytes <= self.cut_after_bytes:
                return None
            if self.match not in path:
                return None
            self._left -= 1
            self.cuts += 1
            return self.cut_after_bytes
