"""The short soak: many `docker run --rm` on one daemon,
then nothing may be left behind.  bench/soak.py is the long one (1,000 + 100).

One real daemon (`python -m launcher`, its own TMPDIR) runs a warm-up of 50
sequential runs and a burst of 20 concurrent ones, then the soak proper: 100
sequential and 20 concurrent, in turn as the Docker SDK's `run(remove=True)`,
as the docker CLI's calls for `run --rm` (AutoRemove) made with the SDK, and
as the docker CLI itself where it is installed, half of each with a memory and
pids limit (harness.soak_runs).  The census of
harness.census, taken before the first run and after the last, must be equal;
the census itself is checked first against leaks made on purpose.  Run as root.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import census
from harness.soak import SoakReport, soak, soak_daemon
from launcher.cgroups import CgroupManager
from tests.conftest import ALPHA

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon mounts and unshares: needs root")

WARMUP_N, SEQUENTIAL_N, CONCURRENT_N = 50, 100, 20
# The warm-up makes 70 x 4 container events, more than the 256 the daemon keeps
# (its `docker events --since` buffer), so that buffer is full before the first
# RSS reading.  After that a soak of 120 runs here grows the RSS by 0.25-0.6 MiB
# (the allocator settling).  One container record kept by mistake holds about
# 22 KiB with its events (tracemalloc, in-process daemon): over 2 MiB in 120 runs.
RSS_BOUND_KIB = 1536

# A stand-in daemon whose leaks the test makes on purpose, one command a line.
FAKE_DAEMON = r"""
import os, subprocess, sys, threading
fds, children, zombies, stop = [], [], [], threading.Event()
for line in sys.stdin:
    what = line.strip()
    if what == "fd":
        fds.append(os.open("/dev/null", os.O_RDONLY))
    elif what == "thread":
        threading.Thread(target=stop.wait).start()
    elif what == "zombie":
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        zombies.append(pid)
    elif what == "namespaces":
        children.append(subprocess.Popen(["unshare", "--net", "--mount", "--uts", "sleep", "60"]))
    elif what == "undo":
        for fd in fds:
            os.close(fd)
        stop.set()
        for child in children:
            child.kill()
            child.wait()
        for pid in zombies:
            os.waitpid(pid, 0)
        fds, children, zombies = [], [], []
    print("ok", flush=True)
"""


def _ask(proc: subprocess.Popen, command: str) -> None:
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "ok"


def _until(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_the_census_sees_each_kind_of_leak_and_forgets_it_when_undone(tmp_path):
    """Leaks made on purpose in a stand-in daemon: an fd, a thread, a zombie, a
    child in three new namespaces, a mount below its root, a container cgroup
    named after one of its containers (and one of another daemon), a file in its
    TMPDIR.  Each is found; undone, the census equals the first one again."""
    root, tmp_dir = tmp_path / "root", tmp_path / "tmp"
    (root / "containers" / "c1" / "rootfs").mkdir(parents=True)
    tmp_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", FAKE_DAEMON], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    parent = next((p for p in census.cgroup_parents(proc.pid) if p.parent.is_dir()), None)
    made_parent = parent is not None and not parent.exists()
    ours, theirs = (parent / name if parent else None for name in ("soaktest-ours", "soaktest-theirs"))
    mount_point = root / "containers" / "c1" / "rootfs"
    try:
        _ask(proc, "ready?")  # its interpreter is up: no start-up files open any more
        before = census.take(proc.pid, root, [tmp_dir])
        for command in ("fd", "thread", "zombie", "namespaces"):
            _ask(proc, command)
        comm = Path(f"/proc/{proc.pid}/comm").read_text().strip()

        def made() -> bool:  # the child has exited (a zombie), unshare has exec'd sleep
            now = census.take(proc.pid, root, [tmp_dir])
            return bool(now.zombies) and any(p.endswith(" sleep") for p in now.processes)
        _until(made)
        subprocess.run(["mount", "-t", "tmpfs", "soaktest", str(mount_point)], check=True)
        (tmp_dir / "left-behind").write_text("x")
        if parent is not None:
            for d in (ours, theirs):
                d.mkdir(parents=True)
        after = census.take(proc.pid, root, [tmp_dir])
        found = census.leaks(before, after, ours={"soaktest-ours"})
        print(f"leaks made on purpose, as the census reports them: {found}")
        assert found["fds"][0] == "1 more open" and len(found["fds"]) == 2
        assert found["fds"][1].endswith(" -> /dev/null")
        assert found["threads"] == ["1 more (2)"]
        assert len(found["zombies"]) == 1 and found["zombies"][0].endswith(" " + comm)
        assert sorted(p.split()[1] for p in found["processes"]) == sorted([comm, "sleep"])
        assert sorted(n.split(":")[0] for n in found["namespaces"]) == ["mnt", "net", "uts"]
        assert found["mounts"] == [str(mount_point)]
        assert found["files"] == [str(tmp_dir / "left-behind")]
        if parent is not None:
            assert found["cgroups"] == [str(ours)]  # the other daemon's is not ours
            assert str(theirs) in census.leaks(before, after)["cgroups"]
        _ask(proc, "undo")
        subprocess.run(["umount", str(mount_point)], check=True)
        (tmp_dir / "left-behind").unlink()
        for d in (ours, theirs):
            if d is not None:
                d.rmdir()
        again, still = census.settle(lambda: census.take(proc.pid, root, [tmp_dir]), before, 5)
        assert still == {}, still
        assert again.figures() | {"rss_kib": 0} == before.figures() | {"rss_kib": 0}
    finally:
        proc.kill()
        proc.wait()
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)
        for d in (ours, theirs):
            if d is not None and d.exists():
                d.rmdir()
        if made_parent:
            try:
                parent.rmdir()
            except OSError:
                pass  # a daemon made a container cgroup there meanwhile


def _hanging_request(sock: Path, path: str) -> socket.socket:
    """A client that sent one request and read the status line and headers
    (streamed answers begin at once), then waits; the caller hangs up."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(str(sock))
    conn.sendall(f"POST /v1.41{path} HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        assert chunk, f"{path}: the daemon closed the connection: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return conn


def test_a_client_that_hangs_up_leaves_no_thread_behind(registry, tmp_path):
    """`docker run` killed between create and start: its attach and its wait
    (condition next-exit, removed) wait for a container that never starts.
    dockerd ends them when the client goes away; so must docksim, or each such
    client keeps a thread and a socket in the daemon for ever."""
    with soak_daemon(tmp_path, registry.url) as daemon:
        client = daemon.client()
        try:
            client.images.pull(ALPHA)
            cid = client.api.create_container(ALPHA, ["true"])["Id"]
        finally:
            client.close()
        start = census.quiet(daemon.census)
        hanging = [_hanging_request(daemon.socket, f"/containers/{cid}/attach?stream=1&stdout=1&stderr=1"),
                   _hanging_request(daemon.socket, f"/containers/{cid}/wait?condition=next-exit"),
                   _hanging_request(daemon.socket, f"/containers/{cid}/wait?condition=removed")]
        # the attach answers first, then opens the log it follows
        _until(lambda: any(t.endswith("/container.log") for t in daemon.census().fds.values()))
        during = daemon.census()
        for conn in hanging:
            conn.close()
        after, left = census.settle(daemon.census, start, timeout_s=5)
        print(f"daemon threads: {start.threads} idle, {during.threads} with 3 hanging "
              f"requests, {after.threads} after their clients hung up")
        assert during.threads == start.threads + 3
        opened = sorted(t if t.startswith("socket:") else Path(t).name
                        for n, t in during.fds.items() if start.fds.get(n) != t)
        assert opened[0] == "container.log" and len(opened) == 4  # attach follows the log
        assert all(t.startswith("socket:") for t in opened[1:])
        assert left == {}
        client = daemon.client()
        try:
            client.api.remove_container(cid)
            assert client.containers.list(all=True) == []
        finally:
            client.close()


@pytest.fixture(scope="module")
def soaked(registry, tmp_path_factory) -> tuple[SoakReport, dict]:
    """One soak of one daemon; also what the daemon said at the end (`docker
    info`, `docker ps -a`), its exit status and the mounts left after it stopped."""
    work = tmp_path_factory.mktemp("soak")
    began = time.monotonic()
    with soak_daemon(work, registry.url) as daemon:
        report = soak(daemon, ALPHA, SEQUENTIAL_N, CONCURRENT_N, WARMUP_N)
        client = daemon.client()
        try:
            final = {"info": client.info(), "containers": client.containers.list(all=True)}
        finally:
            client.close()
    final.update(exit_status=daemon.proc.returncode, mounts_after_stop=daemon.mounts_after_stop,
                 seconds=time.monotonic() - began)
    return report, final


def test_every_run_exits_0_with_its_own_output(soaked):
    report, final = soaked
    cgroups = CgroupManager().version is not None
    print(f"soak: {len(report.warmup)} warm-up, {len(report.sequential)} sequential in "
          f"{report.sequential_s:.1f} s ({len(report.sequential) / report.sequential_s:.1f} runs/s), "
          f"{len(report.concurrent)} concurrent in {report.concurrent_s:.1f} s; "
          f"{final['seconds']:.1f} s with the daemon's start and stop; clients: "
          f"{', '.join(report.styles)}")
    assert report.failures(cgroups) == []
    assert [len(report.warmup), len(report.sequential), len(report.concurrent)] == [
        WARMUP_N + CONCURRENT_N, SEQUENTIAL_N, CONCURRENT_N]
    assert sorted(r.index for r in report.warmup + report.runs) == list(range(190))
    kinds = {(r.style, r.limited) for r in report.runs}
    assert kinds == {(style, limited) for style in report.styles for limited in (False, True)}
    assert report.styles[:2] == ("sdk", "api")  # and "docker" where the CLI is installed
    # the daemon's own account: every container created, started, died with 0, destroyed
    assert report.events == {"create": 190, "start": 190, "die": 190, "destroy": 190}
    assert report.event_problems == []


def test_limited_runs_ran_in_a_cgroup_of_their_own(soaked):
    """The container counts its own `docksim/<hostname>` cgroups: at least one
    with limits (one per v1 hierarchy, one on v2), none without; none at all on
    a host without cgroups, where the daemon discards limits with a warning."""
    report, _ = soaked
    version = CgroupManager().version
    own = {r.index: int(r.output.split()[1]) for r in report.runs}
    limited = [r.index for r in report.runs if r.limited]
    print(f"cgroup v{version}: own cgroups seen by the limited containers: "
          f"{sorted(set(own[i] for i in limited))}")
    assert len(limited) == (SEQUENTIAL_N + CONCURRENT_N) // 2
    assert all((own[i] >= 1) == (version is not None) for i in limited)
    assert all(n == 0 for i, n in own.items() if i not in limited)


def test_nothing_is_left_behind(soaked):
    """After the soak, the census equals the one before the first run: fds,
    threads, processes, zombies, mounts, cgroups, namespaces, scratch files."""
    report, final = soaked
    start, after = report.start.figures(), report.after.figures()
    print(f"census before the first run: {start}")
    print(f"census after the last run:   {after}")
    print(f"during the sequential runs: at most {report.peak('threads')} threads, "
          f"{report.peak('fds')} fds")
    assert report.leaks == {}
    for kind in ("processes", "zombies", "mounts", "namespaces", "files"):
        assert after[kind] == 0, kind
    # the cgroup parents are shared with any other docksim daemon on this host
    assert len(report.containers) == 190
    assert not {Path(c).name for c in report.after.cgroups} & report.containers
    assert (after["fds"], after["threads"]) == (start["fds"], start["threads"])
    assert final["containers"] == [] and final["info"]["Containers"] == 0


def test_rss_stays_flat(soaked):
    report, _ = soaked
    print(f"daemon RSS: start {report.start.rss_kib} KiB, after warm-up {report.before.rss_kib} KiB, "
          f"after the soak {report.after.rss_kib} KiB (growth {report.rss_growth_kib:+d} KiB, "
          f"bound {RSS_BOUND_KIB} KiB), max {report.rss_max_kib} KiB")
    assert report.before.rss_kib > report.start.rss_kib  # the readings are real
    assert report.rss_growth_kib < RSS_BOUND_KIB


def test_the_daemon_stops_cleanly_after_the_soak(soaked):
    _, final = soaked
    assert final["exit_status"] == 0
    assert final["mounts_after_stop"] == frozenset()
