"""`measure`: the scenario played for real on this machine.

The images are built from the scenario and served by docksim's registry, which
also plays the scenario's link (bandwidth and round-trip time).  For every
replication a fresh daemon, with an empty store, is started in a temporary
directory; the clients play the steps against it; then the daemon is stopped
and everything it made is removed, also when something failed.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from harness.clients import MeasureError, RunContext, run_clients
from registry.builder import build_images
from vocab.scenario import Scenario
from vocab.trace import PhaseRow

PROJECT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 30
Progress = Callable[[str], None]


def why_not_measurable() -> str | None:
    """One line saying why this machine cannot measure, or None when it can."""
    if sys.platform != "linux":
        return "measure needs Linux (namespaces and overlayfs)"
    if os.geteuid() != 0:
        return ("measure needs root: the engine mounts overlayfs and creates namespaces "
                "(run it as root, e.g. with sudo)")
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "measure needs overlayfs, which this kernel does not offer (modprobe overlay)"
    return None


def cache_dir() -> Path:
    """Built layers are kept between runs: generating them takes a while."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "docksim" / "layers"


def _mounts_below(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Unmount whatever is still mounted below path, then delete it; rmtree must
    never walk into a mount (it would delete the files behind it)."""
    for point in _mounts_below(path):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    if _mounts_below(path):
        raise MeasureError(f"{path}: mounts are still there after unmounting; left in place")
    shutil.rmtree(path, ignore_errors=True)


def _wait_for(predicate: Callable[[], bool], proc: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not predicate():
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise MeasureError(f"{what} exited at start ({proc.returncode}): {' '.join(tail)}")
        if time.monotonic() > deadline:
            raise MeasureError(f"{what} did not answer within {START_TIMEOUT_S} s")
        time.sleep(0.02)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def _process(argv: list[str], log: Path) -> Iterator[subprocess.Popen]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        _stop(proc)


@contextmanager
def serve_registry(scenario: Scenario, root: Path, work: Path) -> Iterator[str]:
    """docksim's registry as a process of its own, shaping the scenario's link."""
    ready = work / "registry.ready"
    argv = [sys.executable, "-m", "registry", "serve", "--root", str(root),
            "--listen", "127.0.0.1:0", "--rtt-ms", str(scenario.network.rtt_ms),
            "--ready-file", str(ready)]
    if scenario.network.bandwidth_mbps:
        argv += ["--bandwidth-mbps", str(scenario.network.bandwidth_mbps)]
    log = work / "registry.log"
    with _process(argv, log) as proc:
        _wait_for(lambda: ready.exists() and ready.read_text().endswith("\n"), proc, "the registry", log)
        yield f"http://{ready.read_text().strip()}"


@contextmanager
def run_daemon(scenario: Scenario, registry_url: str, work: Path, replication: int) -> Iterator[str]:
    """A fresh docksim daemon with an empty store: every replication starts cold."""
    root = work / f"daemon-{replication}"
    sock = work / f"daemon-{replication}.sock"
    log = work / f"daemon-{replication}.log"
    argv = [sys.executable, "-m", "launcher", "--socket", str(sock), "--root", str(root),
            "--registry", registry_url,
            "--max-concurrent-downloads", str(scenario.daemon.max_concurrent_downloads)]
    try:
        with _process(argv, log) as proc:
            _wait_for(sock.exists, proc, "the daemon", log)
            yield str(sock)
    finally:
        remove_tree(root)


def measure(scenario: Scenario, progress: Progress = lambda message: None,
            keep_logs: Path | None = None) -> list[PhaseRow]:
    """Run every replication for real; return the trace rows (source real, engine launcher)."""
    reason = why_not_measurable()
    if reason:
        raise MeasureError(reason)
    work = Path(tempfile.mkdtemp(prefix="docksim-measure-"))
    rows: list[PhaseRow] = []
    try:
        progress("building images")
        report = build_images(scenario, work / "registry", cache_dir=cache_dir())
        for warning in report.warnings:
            progress(f"warning: {warning}")
        names = {layer.digest.split(":", 1)[1][:12]: name for name, layer in report.layers.items()}
        with serve_registry(scenario, work / "registry", work) as registry_url:
            for replication in range(scenario.replications):
                progress(f"replication {replication + 1} of {scenario.replications}")
                with run_daemon(scenario, registry_url, work, replication) as sock:
                    ctx = RunContext(scenario, sock, replication, "launcher", names)
                    rows.extend(run_clients(ctx))
    finally:
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for log in work.glob("*.log"):
                shutil.copy(log, keep_logs / log.name)
        remove_tree(work)
    return rows
