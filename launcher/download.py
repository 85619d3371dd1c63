"""One layer blob from the registry into a spool: dockerd's layer download, with its retries.

What it mirrors (moby's distribution/xfer download manager and pull_v2):
- the blob streams in and its sha256 is computed as the bytes arrive; the size
  and digest are checked after the last byte;
- a lost connection, a timeout or a 5xx answer is retried: at most
  `attempts` (dockerd's `max-download-attempts`, 5) tries in all, waiting
  `unit_s` (5 s) x the number of failures so far between them, and showing
  "Retrying in N seconds" meanwhile;
- a retry resumes where the bytes stopped, with `Range: bytes=N-`; a registry
  that ignores the range and sends the whole blob again has the first N bytes
  skipped, so the digest still covers each byte once;
- a 4xx answer or a digest mismatch is not retried.  (dockerd retries a digest
  mismatch after a resumed download from scratch; here the unpacker has already
  consumed the bytes, so the pull fails and leaves nothing.)
"""
from __future__ import annotations

import hashlib
import http.client
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable

from launcher.registry_client import PullError, RegistryClient
from launcher.spool import Spool

READ_BYTES = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class RetryPolicy:
    """dockerd's defaults; tests shrink `unit_s` so they do not wait 50 s."""

    attempts: int = 5
    unit_s: float = 5.0

    def delay_s(self, failures: int) -> float:
        return failures * self.unit_s


def _skip_for(resp: http.client.HTTPResponse, offset: int, digest: str) -> int:
    """Bytes of this response to drop so the stream continues at `offset`."""
    if resp.status == 200:
        return offset  # the whole blob again
    match = _CONTENT_RANGE.fullmatch(resp.getheader("Content-Range", "").strip())
    if not match or int(match.group(1)) != offset:
        raise PullError(f"blob {digest[:19]}: the registry resumed at the wrong offset "
                        f"({resp.getheader('Content-Range')!r}, wanted byte {offset})")
    return 0


class BlobDownload:
    """Fetches one blob into `spool`; `run()` returns the bytes read off the network."""

    def __init__(self, connect: Callable[[], RegistryClient], digest: str, size: int,
                 spool: Spool, policy: RetryPolicy, cancel: threading.Event,
                 on_bytes: Callable[[int], None] = lambda n: None,
                 on_status: Callable[[str], None] = lambda s: None):
        self.connect, self.digest, self.size = connect, digest, size
        self.spool, self.policy, self.cancel = spool, policy, cancel
        self.on_bytes, self.on_status = on_bytes, on_status
        self.hasher = hashlib.sha256()
        self.wire_bytes = 0
        self.attempts = 0

    def run(self) -> int:
        failures = 0
        while True:
            self._check_cancel()
            self.attempts += 1
            client = self.connect()
            try:
                self._attempt(client)
                break
            except PullError as exc:
                if not exc.retryable:
                    raise
                failures += 1
                if failures >= self.policy.attempts:
                    raise PullError(f"{exc} (gave up after {failures} attempts)") from None
                self._back_off(self.policy.delay_s(failures))
            finally:
                client.close()
        if self.spool.written != self.size:
            raise PullError(f"blob {self.digest[:19]}: got {self.spool.written} bytes, "
                            f"manifest says {self.size}")
        self.on_status("Verifying Checksum")
        if f"sha256:{self.hasher.hexdigest()}" != self.digest:
            raise PullError(f"blob {self.digest[:19]}: content does not match its digest")
        return self.wire_bytes

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise PullError(f"blob {self.digest[:19]}: download cancelled")

    def _back_off(self, delay_s: float) -> None:
        """Wait, saying "Retrying in N seconds" once a second, as dockerd does."""
        deadline = time.monotonic() + delay_s
        while (left := deadline - time.monotonic()) > 0:
            seconds = math.ceil(left)
            self.on_status(f"Retrying in {seconds} second{'s' if seconds != 1 else ''}")
            if self.cancel.wait(min(left, left - (seconds - 1))):
                break
        self._check_cancel()

    def _attempt(self, client: RegistryClient) -> None:
        offset = self.spool.written
        resp = client.open_blob(self.digest, offset)
        skip = _skip_for(resp, offset, self.digest)
        expected = resp.length  # body bytes announced (None: until the connection ends)
        try:
            while chunk := resp.read1(READ_BYTES):
                self.wire_bytes += len(chunk)
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                    if not chunk:
                        continue
                if self.spool.written + len(chunk) > self.size:
                    raise PullError(f"blob {self.digest[:19]}: the registry sends more than "
                                    f"the {self.size} bytes the manifest says")
                self.hasher.update(chunk)
                self.spool.write(chunk)
                self._check_cancel()
                self.on_bytes(self.spool.written)
        except (OSError, http.client.HTTPException) as exc:
            raise PullError(f"blob {self.digest[:19]}: connection lost after "
                            f"{self.spool.written} bytes: {exc}", retryable=True) from None
        if (expected is not None and resp.length) or self.spool.written < self.size:
            raise PullError(f"blob {self.digest[:19]}: connection lost after "
                            f"{self.spool.written} of {self.size} bytes", retryable=True)
