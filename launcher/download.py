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
- a blob that does not match its digest is discarded -- the spool is emptied,
  and the unpacker, which follows it, starts over -- and fetched again from its
  first byte after the back-off.  (dockerd retries a mismatch only when the
  download had been resumed and fails a fresh one at once; docksim always
  retries, so a corrupted byte on the way costs one download, never the pull.)
- a connection that brings no byte for `read_timeout_s` is given up and
  resumed like a lost one.  dockerd has no such timeout of its own: a stalled
  connection waits for TCP to give up, which can take many minutes.
- a 429 is retried after its `Retry-After` (instead of the back-off).  dockerd
  itself does not retry a TOOMANYREQUESTS answer; a client that honours
  Retry-After is what registries ask for, and the model does the same.
- other 4xx answers are not retried.
Giving up, the error names the layer's digest and the last cause, and says how
many attempts were made; dockerd's pull ends its progress stream with it.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable

from launcher.registry_client import PullError, RegistryClient
from launcher.spool import Spool

log = logging.getLogger(__name__)
READ_BYTES = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class RetryPolicy:
    """dockerd's defaults; tests shrink `unit_s` so they do not wait 50 s.
    `read_timeout_s`: a blob connection silent this long is given up (docksim's)."""

    attempts: int = 5
    unit_s: float = 5.0
    read_timeout_s: float = 60.0

    def delay_s(self, failures: int) -> float:
        return failures * self.unit_s


def _skip_for(resp: http.client.HTTPResponse, offset: int, digest: str) -> int:
    """Bytes of this response to drop so the stream continues at `offset`."""
    if resp.status == 200:
        return offset  # the whole blob again
    match = _CONTENT_RANGE.fullmatch(resp.getheader("Content-Range", "").strip())
    if not match or int(match.group(1)) != offset:
        raise PullError(f"layer {digest}: the registry resumed at the wrong offset "
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
                self._verify()
                break
            except PullError as exc:
                if not exc.retryable:
                    raise
                failures += 1
                if failures >= self.policy.attempts:
                    raise PullError(f"{exc} (gave up after {failures} attempts)") from None
                delay_s = (exc.retry_after_s if exc.retry_after_s is not None
                           else self.policy.delay_s(failures))
                log.warning("%s; attempt %d of %d, retrying in %g s", exc, failures,
                            self.policy.attempts, delay_s)
                self._back_off(delay_s)
            finally:
                client.close()
        return self.wire_bytes

    def _verify(self) -> None:
        """After the last byte: the size, then the digest.  A mismatch discards the
        download (the spool starts over, and so does its reader) and is retried."""
        if self.spool.written != self.size:
            raise PullError(f"layer {self.digest}: got {self.spool.written} bytes, "
                            f"manifest says {self.size}")
        self.on_status("Verifying Checksum")
        got = f"sha256:{self.hasher.hexdigest()}"
        if got != self.digest:
            self.spool.restart()
            self.hasher = hashlib.sha256()
            raise PullError(f"layer {self.digest}: content does not match its digest (got {got}); "
                            "the download was discarded", retryable=True)

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise PullError(f"layer {self.digest}: download cancelled")

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
        client.set_timeout(self.policy.read_timeout_s)
        try:
            resp = client.open_blob(self.digest, offset)
        except PullError as exc:
            raise PullError(f"layer {self.digest}: {exc}", exc.status, exc.retryable,
                            exc.retry_after_s) from None
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
                    raise PullError(f"layer {self.digest}: the registry sends more than "
                                    f"the {self.size} bytes the manifest says")
                self.hasher.update(chunk)
                self.spool.write(chunk)
                self._check_cancel()
                self.on_bytes(self.spool.written)
        except TimeoutError:
            raise PullError(f"layer {self.digest}: no byte for {self.policy.read_timeout_s:g} s "
                            f"(read timeout) after {self.spool.written} of {self.size} bytes",
                            retryable=True) from None
        except (OSError, http.client.HTTPException) as exc:
            raise PullError(f"layer {self.digest}: connection lost after {self.spool.written} "
                            f"of {self.size} bytes: {exc}", retryable=True) from None
        if (expected is not None and resp.length) or self.spool.written < self.size:
            raise PullError(f"layer {self.digest}: connection closed after "
                            f"{self.spool.written} of {self.size} bytes", retryable=True)
