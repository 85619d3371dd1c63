"""A soak of docksim's daemon: many `docker run --rm`, then a leak census.

dockerd runs for months; every container it ran and removed must leave nothing
behind.  ``soak`` plays that on one fresh daemon (``soak_daemon``): a census
before the first run, a warm-up (sequential runs and one concurrent burst, so
that the daemon's memory has reached the high-water mark of its busiest
moment: thread stacks and allocator arenas that a burst makes are kept for the
next one, as in any long-lived process), the soak proper (``sequential`` runs
one after the other and a burst of ``concurrent`` at once, see
``harness.soak_runs``), and a census again once the daemon has settled, which
must hold nothing the first did not.  The daemon's RSS is read after the
warm-up and every few runs.  ``SoakReport`` holds the runs, the censuses, what
leaked and how the RSS moved.  Used by tests/test_soak.py (short) and
bench/soak.py (long).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import docker

from harness import census
from harness.procs import stop_process
from harness.soak_runs import (API_VERSION, CLIENT_TIMEOUT_S, EventTally, RunResult, Target,
                               concurrent, find_docker_cli, sequential)

PROJECT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 20
STOP_GRACE_S = 20
SETTLE_S = 10.0


@dataclass
class SoakDaemon:
    """One `python -m launcher` started for a soak, with a TMPDIR of its own."""
    proc: subprocess.Popen
    socket: Path
    root: Path
    tmp_dir: Path
    log: Path
    mounts_after_stop: frozenset[str] = frozenset()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=f"unix://{self.socket}", version=API_VERSION,
                                   timeout=CLIENT_TIMEOUT_S)

    def census(self) -> census.Census:
        return census.take(self.pid, self.root, [self.tmp_dir])


@contextmanager
def soak_daemon(work: Path, registry_url: str, log_level: str = "WARNING") -> Iterator[SoakDaemon]:
    """Start the daemon in ``work``; stop it with SIGTERM on the way out and
    record what stayed mounted below ``work`` after it stopped."""
    work = Path(work)
    tmp_dir = work / "daemon-tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    daemon = SoakDaemon(None, work / "d.sock", work / "root", tmp_dir, work / "daemon.log")
    argv = [sys.executable, "-m", "launcher", "--socket", str(daemon.socket), "--root",
            str(daemon.root), "--registry", registry_url, "--log-level", log_level]
    env = {**os.environ, "TMPDIR": str(tmp_dir)}
    with open(daemon.log, "wb") as log:
        daemon.proc = subprocess.Popen(argv, cwd=PROJECT, env=env, stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not daemon.socket.exists():
            if daemon.proc.poll() is not None or time.monotonic() > deadline:
                tail = daemon.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the daemon did not start: {tail}")
            time.sleep(0.02)
        yield daemon
    finally:
        stop_process(daemon.proc, grace_s=STOP_GRACE_S)
        daemon.mounts_after_stop = census.mounts_below(os.getpid(), work)


class Sample(NamedTuple):
    done: int      # runs of the soak proper so far
    rss_kib: int
    threads: int
    fds: int


@dataclass
class SoakReport:
    sequential: list[RunResult]        # the soak proper: one after the other
    concurrent: list[RunResult]        # and all at once
    warmup: list[RunResult]
    warmup_s: float
    sequential_s: float
    concurrent_s: float
    start: census.Census               # fresh daemon, image pulled, events followed
    before: census.Census              # after the warm-up, settled
    after: census.Census               # after the soak, settled
    leaks: dict[str, list[str]]        # what ``after`` holds that ``start`` did not
    samples: list[Sample] = field(default_factory=list)  # during the sequential runs
    events: dict[str, int] = field(default_factory=dict)  # action -> containers
    event_problems: list[str] = field(default_factory=list)
    containers: frozenset[str] = frozenset()  # ids of every container created
    styles: tuple[str, ...] = ()              # how the runs were made (harness.soak_runs)

    @property
    def runs(self) -> list[RunResult]:
        return self.sequential + self.concurrent

    def failures(self, cgroups: bool) -> list[str]:
        return [f"run {r.index} ({r.style}, {'limits' if r.limited else 'no limits'}): {p}"
                for r in self.warmup + self.runs if (p := r.problem(cgroups))]

    @property
    def rss_growth_kib(self) -> int:
        return self.after.rss_kib - self.before.rss_kib

    @property
    def rss_max_kib(self) -> int:
        return max(s.rss_kib for s in self.samples)

    def peak(self, what: str) -> int:
        """The most ``threads`` or ``fds`` seen while the sequential runs ran."""
        return max(getattr(s, what) for s in self.samples)


def rss_slope_kib_per_run(samples: list[Sample]) -> float:
    """The least-squares slope of RSS over runs: what each run costs for good."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mx = sum(s.done for s in samples) / n
    my = sum(s.rss_kib for s in samples) / n
    sxx = sum((s.done - mx) ** 2 for s in samples)
    return sum((s.done - mx) * (s.rss_kib - my) for s in samples) / sxx if sxx else 0.0


def soak(daemon: SoakDaemon, image: str, sequential_n: int, concurrent_n: int,
         warmup_n: int, sample_every: int = 10, docker_cli: bool = True,
         progress: Callable[[str], None] = lambda text: None) -> SoakReport:
    """Warm up, settle, ``sequential_n`` + ``concurrent_n`` runs, settle; the
    censuses are taken with no client connected but the events follower.
    With ``docker_cli`` (and the CLI installed) a third of the runs are the
    real `docker run --rm`."""
    cli = find_docker_cli() if docker_cli else None
    target = Target(daemon.socket, image, cli, daemon.socket.parent / "docker-config")
    puller = daemon.client()
    try:
        puller.images.pull(image)
    finally:
        puller.close()
    watcher = daemon.client()
    tally = EventTally(watcher, since_s=time.time() - 1)
    try:
        start = census.quiet(daemon.census)  # the puller's connection thread has ended
        progress(f"warm-up: {warmup_n} sequential, {concurrent_n} concurrent")
        began = time.monotonic()
        warmup = sequential(target, 0, warmup_n)
        warmup += concurrent(target, warmup_n, concurrent_n)
        warmup_s = time.monotonic() - began
        first = warmup_n + concurrent_n
        tally.wait_for("destroy", first)
        before, _ = census.settle(daemon.census, start, SETTLE_S, ours=tally.with_action("create"))
        samples = [Sample(0, before.rss_kib, before.threads, len(before.fds))]

        def sample(result: RunResult) -> None:
            done = result.index - first + 1
            if done % sample_every == 0:
                samples.append(Sample(done, *census.quick(daemon.pid)))
                if done % (sample_every * 10) == 0:
                    progress(f"{done} sequential runs, RSS {samples[-1].rss_kib} KiB")

        began = time.monotonic()
        seq_runs = sequential(target, first, sequential_n, sample)
        sequential_s = time.monotonic() - began
        progress(f"{concurrent_n} concurrent runs")
        began = time.monotonic()
        conc_runs = concurrent(target, first + sequential_n, concurrent_n)
        concurrent_s = time.monotonic() - began
        total = first + sequential_n + concurrent_n
        tally.wait_for("destroy", total)
        after, leaked = census.settle(daemon.census, start, SETTLE_S, ours=tally.with_action("create"))
        samples.append(Sample(sequential_n + concurrent_n, after.rss_kib, after.threads, len(after.fds)))
        events = {a: len(tally.with_action(a)) for a in ("create", "start", "die", "destroy")}
        problems = _event_problems(tally, total)
        created = frozenset(tally.with_action("create"))
    finally:
        tally.close()
        watcher.close()
    return SoakReport(seq_runs, conc_runs, warmup, warmup_s, sequential_s, concurrent_s, start, before, after,
                      leaked, samples, events, event_problems=problems, containers=created,
                      styles=target.styles)


def _event_problems(tally: EventTally, total: int) -> list[str]:
    """Every container created must have started, died with 0 and been destroyed."""
    created = tally.with_action("create")
    problems = [f"{len(created)} containers created, {total} runs"] if len(created) != total else []
    for action in ("start", "die", "destroy"):
        missing = created - tally.with_action(action)
        if missing:
            problems.append(f"{len(missing)} containers without a {action} event")
    bad = {cid: code for cid, code in tally.exit_codes.items() if code != "0"}
    if bad:
        problems.append(f"{len(bad)} containers died with a non-zero status: {sorted(bad.values())}")
    return problems
