"""`measure`: the scenario played for real on this machine.

The images are built from the scenario and served by docksim's registry, which
also plays the scenario's link (bandwidth and round-trip time) and commits its
`[registry] faults`.  For every replication a fresh daemon, with an empty
store, is started in a temporary directory; the clients play the steps against
it; then the daemon is stopped and everything it made is removed, also when
something failed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Callable, ContextManager, Iterator

from harness.clients import MeasureError, RunContext, run_clients
from harness.procs import stop_process
from registry.builder import build_images
from vocab.faults import faults_spec
from vocab.scenario import Scenario
from vocab.trace import PhaseRow

PROJECT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 30
Progress = Callable[[str], None]
Between = Callable[[int], None]


def why_not_measurable(engine: str = "launcher") -> str | None:
    """One line saying why this machine cannot measure, or None when it can."""
    if engine == "docker" and shutil.which("dockerd") is None:
        return "measure --engine docker needs dockerd (apt-get install docker.io)"
    if sys.platform != "linux":
        return "measure needs Linux (namespaces and overlayfs)"
    if os.geteuid() != 0:
        return ("measure needs root: the engine mounts overlayfs and creates namespaces "
                "(run it as root, e.g. with sudo)")
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "measure needs overlayfs, which this kernel does not offer (modprobe overlay)"
    return None


def why_not_playable(scenario: Scenario, network: str = "emulated") -> str | None:
    """One line naming what the real engine cannot play yet in this scenario, or None."""
    from harness.kernel_world import MAX_NODES
    problems = []
    nodes = len(scenario.node_names())
    if network == "emulated" and nodes > 1:
        problems.append("more than one node without --network kernel")
    if nodes > MAX_NODES:
        problems.append(f"more than {MAX_NODES} nodes")
    if scenario.distribution.mode != "registry":
        problems.append(f"distribution mode {scenario.distribution.mode!r}")
    registry = scenario.registry
    if (registry.auth != "none" or registry.rate_limit
            or registry.workers or registry.request_ms is not None):
        problems.append("[registry] settings")
    if any(group.cached or group.cache_mb is not None for group in scenario.nodes):
        problems.append("pre-cached images or a cache size")
    if any(step.arrivals != "fixed" or len(step.choices) > 1 or step.retries for step in scenario.steps):
        problems.append("Poisson arrivals, image choices or retries in a step")
    if scenario.daemon.cores is not None or scenario.daemon.api_workers is not None:
        problems.append("[daemon] cores or api_workers")
    if not problems:
        return None
    return (f"{scenario.source or scenario.name}: the real engine cannot play "
            f"{', '.join(problems)} yet (simulate it with `run`)")


def why_not_measured(scenario: Scenario, engine: str, network: str) -> str | None:
    """Why this machine, engine and network cannot measure this scenario, or None:
    the one check `measure` and the CLI share."""
    return why_not_measurable(engine) or why_not_playable(scenario, network)


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


@contextmanager
def _process(argv: list[str], log: Path, popen=subprocess.Popen) -> Iterator[subprocess.Popen]:
    with open(log, "ab") as out:
        proc = popen(argv, cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        stop_process(proc)


@contextmanager
def serve_registry(scenario: Scenario, root: Path, work: Path, popen=subprocess.Popen,
                   listen: str = "127.0.0.1:0", shape: bool = True,
                   replication: int = 0) -> Iterator[str]:
    """docksim's registry as a process of its own; with `shape` it plays the
    scenario's link itself (on kernel networks the kernel does).  Its faults are
    drawn from the stream the model's registry draws from in `replication`."""
    ready = work / "registry.ready"
    argv = [sys.executable, "-m", "registry", "serve", "--root", str(root),
            "--listen", listen, "--ready-file", str(ready)]
    if shape:
        argv += ["--rtt-ms", str(scenario.network.rtt_ms)]
        if scenario.network.bandwidth_mbps:
            argv += ["--bandwidth-mbps", str(scenario.network.bandwidth_mbps)]
    if scenario.registry.faults.any:
        argv += ["--faults", faults_spec(scenario.registry.faults),
                 "--faults-seed", str(scenario.seed), "--faults-replication", str(replication)]
    log = work / "registry.log"
    with _process(argv, log, popen) as proc:
        _wait_for(lambda: ready.exists() and ready.read_text().endswith("\n"), proc, "the registry", log)
        yield f"http://{ready.read_text().strip()}"


@contextmanager
def run_daemon(scenario: Scenario, registry_url: str, work: Path, replication: int,
               node: str = "", popen=subprocess.Popen) -> Iterator[str]:
    """A fresh docksim daemon with an empty store: every replication starts cold."""
    name = f"daemon-{node}-{replication}" if node else f"daemon-{replication}"
    root, sock, log = work / name, work / f"{name}.sock", work / f"{name}.log"
    argv = [sys.executable, "-m", "launcher", "--socket", str(sock), "--root", str(root),
            "--registry", registry_url,
            "--max-concurrent-downloads", str(scenario.daemon.max_concurrent_downloads),
            "--max-download-attempts", str(scenario.daemon.max_download_attempts),
            "--retry-backoff-s", str(scenario.daemon.retry_backoff_s),
            "--read-timeout-s", str(scenario.daemon.read_timeout_s)]
    try:
        with _process(argv, log, popen) as proc:
            _wait_for(sock.exists, proc, "the daemon", log)
            yield str(sock)
    finally:
        remove_tree(root)


@contextmanager
def run_docker_engine(scenario: Scenario, registry_url: str, work: Path, replication: int,
                      node: str = "", popen=subprocess.Popen) -> Iterator[str]:
    """A fresh real dockerd, with docksim's registry as its Docker Hub mirror, so
    the scenario's image names (no registry host) resolve there as they do for
    docksim's daemon.  Off loopback (a kernel network) the plain-HTTP registry
    must be named insecure, as `insecure-registries` in daemon.json does."""
    from harness.dockerd import DockerdUnavailable, run_dockerd
    extra = ["--registry-mirror", registry_url,
             "--max-concurrent-downloads", str(scenario.daemon.max_concurrent_downloads)]
    host = registry_url.split("://", 1)[-1]
    if not host.startswith("127."):
        extra += ["--insecure-registry", host]
    if scenario.daemon.max_download_attempts != 5:  # dockerd's own default (its back-off is fixed)
        extra += ["--max-download-attempts", str(scenario.daemon.max_download_attempts)]
    try:
        with run_dockerd(work, extra, popen=popen) as sock:
            yield sock
    except DockerdUnavailable as exc:
        raise MeasureError(str(exc)) from None


ENGINES = {"launcher": run_daemon, "docker": run_docker_engine}


def each_replication(scenario: Scenario, start_registry: Callable[[int], ContextManager[str]],
                     progress: Progress, between: Between | None = None,
                     ) -> Iterator[tuple[int, str, ExitStack]]:
    """Every replication's number, its registry's URL, and an ExitStack that is
    closed when the replication ends (for its daemons).  One registry serves every
    replication, except with faults: then each gets its own, which draws that
    replication's faults, as the model does.  `between(replication)` is called
    before each replication, while none of its daemons runs.  Use it in
    `contextlib.closing`, so that a failure stops the replication's processes at once."""
    with ExitStack() as shared:
        shared_url = (None if scenario.registry.faults.any
                      else shared.enter_context(start_registry(0)))
        for replication in range(scenario.replications):
            if between is not None:
                between(replication)
            # Start with nothing waiting to be written back, as the model's page
            # cache does (model/pagecache.py).  The last daemon's files were just
            # deleted, and dockerd's first unmount syncs the disk: it would pay
            # for that deletion's write-back.
            os.sync()
            progress(f"replication {replication + 1} of {scenario.replications}")
            with ExitStack() as stack:
                yield replication, shared_url or stack.enter_context(start_registry(replication)), stack


def measure(scenario: Scenario, progress: Progress = lambda message: None,
            keep_logs: Path | None = None, engine: str = "launcher",
            network: str = "emulated", between: Between | None = None) -> list[PhaseRow]:
    """Run every replication for real on `engine` (launcher: docksim's daemon;
    docker: a real dockerd); return the trace rows (source real).  `network`:
    emulated (the registry plays the one link) or kernel (namespaces, tbf and
    delays; see harness/kernel_world.py).  `between(replication)` is called
    before each replication (harness/drift.py samples the machine there)."""
    reason = why_not_measured(scenario, engine, network)
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
        sizes = {short: report.layers[name].content_bytes for short, name in names.items()}
        if network == "kernel":
            from harness.kernel_world import measure_on_kernel_network
            rows = measure_on_kernel_network(scenario, work, names, sizes, progress, engine,
                                             between)
        else:
            def start_registry(replication: int):
                return serve_registry(scenario, work / "registry", work, replication=replication)
            with closing(each_replication(scenario, start_registry, progress,
                                          between)) as replications:
                for replication, registry_url, stack in replications:
                    sock = stack.enter_context(ENGINES[engine](scenario, registry_url, work,
                                                               replication))
                    ctx = RunContext(scenario, sock, replication, engine, names, sizes,
                                     node=scenario.node_names()[0])
                    rows.extend(run_clients(ctx))
    finally:
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for log in work.glob("*.log"):
                shutil.copy(log, keep_logs / log.name)
        remove_tree(work)
    return rows
