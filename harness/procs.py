"""Stopping a process docksim started: SIGTERM, a grace period, then SIGKILL
(what `docker stop` does to a container, here for daemons and registries)."""
from __future__ import annotations

import signal
import subprocess


def stop_process(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """Stop `proc` and reap it; a process that already exited is only reaped."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
