"""Crashes: the daemon killed with SIGKILL at random moments, restarted on the same store.

A seeded loop kills a real `python -m launcher` during pulls (layers arriving on a
slow link and being extracted as they arrive), creates, starts and removes,
restarts it on the same root, and checks what dockerd promises after a crash:
the store is consistent (`check` finds nothing, or only the leftovers in tmp
that the restart then removes), no partial layer is ever used, containers that
were running are reported exited (255), their overlays, cgroups and processes
are gone, and the next pull and `run --rm` succeed.  The tests of `check`
itself (a flipped byte in a blob, a half-extracted layer, `--repair` followed by
a re-pull) are here too, on the same restartable daemon.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker
import pytest

from launcher.cgroups import CgroupManager
from launcher.recovery import open_file_holders
from launcher.storecheck import check_store
from tests.conftest import (ALPHA, API_VERSION, BETA, DAEMON_START_TIMEOUT_S, GAMMA, REPO_ROOT,
                            _answers, overlay_mounts_under)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon mounts and unshares: needs root")

SEED = 8
KILLS = 36
CRASH_MBPS = 16         # ~3 s for the largest image: a kill lands mid-download or mid-extract
IMAGES = (ALPHA, BETA, GAMMA)
LONG_RUN = ["sleep", "300"]


class RestartableDaemon:
    """One `python -m launcher` on a fixed root that can be killed and started again."""

    def __init__(self, registry_url: str, work: Path, *flags: str):
        self.registry_url = registry_url
        self.flags = list(flags)
        self.work = work
        self.root = work / "root"
        self.socket = work / "d.sock"
        self.log = work / "daemon.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        argv = [sys.executable, "-m", "launcher", "--socket", str(self.socket),
                "--root", str(self.root), "--registry", self.registry_url, *self.flags]
        self.mark = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        self.starts += 1
        deadline = time.monotonic() + DAEMON_START_TIMEOUT_S
        while not _answers(self.socket) or self.proc.poll() is not None:
            if self.proc.poll() is not None:
                pytest.fail(f"the daemon exited at start ({self.proc.returncode}):\n{self.log_since()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the daemon did not listen within {DAEMON_START_TIMEOUT_S} s")
            time.sleep(0.01)

    def log_since(self) -> str:
        with open(self.log, "rb") as f:
            f.seek(self.mark)
            return f.read().decode(errors="replace")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail("the daemon ignored SIGTERM")

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=f"unix://{self.socket}", version=API_VERSION, timeout=30)


@pytest.fixture
def daemon_on(tmp_path):
    """A factory for restartable daemons; each is stopped at the end of the test,
    after which nothing may stay mounted below its root."""
    made: list[RestartableDaemon] = []

    def make(registry_url: str, *flags: str) -> RestartableDaemon:
        d = RestartableDaemon(registry_url, tmp_path / f"d{len(made)}", *flags)
        d.work.mkdir()
        made.append(d)
        d.start()
        return d

    yield make
    for d in made:
        d.stop()
        left = overlay_mounts_under(d.work)
        assert not left, f"overlay mounts left below the daemon's root: {left}"
        shutil.rmtree(d.root, ignore_errors=True)


def store_problems(root: Path, content: bool = True) -> list[str]:
    return [p.line() for p in check_store(root, content=content).problems]


def container_cgroups(ids: list[str]) -> list[Path]:
    """Cgroup dirs of these containers that exist (docksim/<id> in every hierarchy)."""
    roots = CgroupManager().roots.values()
    return [r / cid for r in set(roots) for cid in ids if (r / cid).exists()]


def log_holders(root: Path) -> dict[str, set[int]]:
    """Processes that still hold a container's log open: survivors of a container."""
    logs = {os.fspath(d / "container.log") for d in (root / "containers").iterdir()}
    return open_file_holders(logs)


def has_image(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


# --- the crash loop ------------------------------------------------------------------

class Workload:
    """What the daemon is doing when it is killed: one operation on a thread."""

    def __init__(self, client: docker.DockerClient, rng: random.Random):
        self.client, self.rng = client, rng
        self.started: list[str] = []   # containers whose start was answered before the kill

    def pull(self) -> None:
        ref = self.rng.choice(IMAGES)
        try:
            self.client.images.remove(ref, force=True)
        except docker.errors.APIError:
            pass
        repository, tag = ref.rsplit(":", 1)
        for _ in self.client.api.pull(repository, tag=tag, stream=True, decode=True):
            pass

    def run(self) -> None:
        present = [ref for ref in IMAGES if has_image(self.client, ref)]
        for i in range(3):
            limits = {"mem_limit": "64m"} if i == 1 else {}
            c = self.client.containers.create(self.rng.choice(present), LONG_RUN, **limits)
            c.start()
            self.started.append(c.id)

    def remove(self) -> None:
        for c in self.client.containers.list(all=True):
            c.remove(force=True)



WINDOWS_S = {"pull": 2.0, "run": 0.4, "remove": 0.3}  # about how long each takes
OPERATIONS = ("pull", "pull", "run", "run", "remove")


def test_sigkill_at_random_moments_then_restart_is_consistent(slow_crash_registry, daemon_on):
    rng = random.Random(SEED)
    d = daemon_on(slow_crash_registry.url)
    client = d.client()
    for ref in IMAGES[:1]:  # something to create containers from in the first rounds
        client.images.pull(ref)
    figures = {"kills": 0, "recovered": 0, "check clean": 0, "containers marked exited": 0,
               "mid-download": 0, "mid-extract": 0}
    ops: dict[str, int] = {}
    began = time.monotonic()
    for round_ in range(KILLS):
        op = rng.choice(OPERATIONS) if client.images.list() else "pull"
        ops[op] = ops.get(op, 0) + 1
        work = Workload(client, rng)
        before = {c.id for c in client.containers.list()}  # running now
        thread = threading.Thread(target=lambda: _quietly(getattr(work, op)), daemon=True)
        thread.start()
        time.sleep(rng.uniform(0.0, WINDOWS_S[op]))
        d.kill()
        figures["kills"] += 1
        thread.join(10)
        client.close()
        running_at_kill = before | set(work.started)

        # before the restart: nothing but tmp leftovers, which are never used
        early = check_store(d.root, content=False).problems
        assert all(p.what == "tmp" for p in early), [p.line() for p in early]
        in_flight = os.listdir(d.root / "tmp")
        figures["mid-download"] += any(n.startswith("blob-") for n in in_flight)
        figures["mid-extract"] += any(n.startswith("layer-") for n in in_flight)

        d.start()
        client = d.client()
        recovered = d.log_since()
        figures["recovered"] += "recovery:" in recovered
        late = store_problems(d.root, content=round_ % 6 == 0)
        assert late == [], f"round {round_} ({op}): {late}\n{recovered}"
        figures["check clean"] += 1

        containers = client.containers.list(all=True)
        states = {c.id: (c.status, c.attrs["State"]["ExitCode"]) for c in containers}
        assert all(s != "running" for s, _ in states.values()), states
        for cid in running_at_kill & set(states):
            assert states[cid] == ("exited", 255), (cid, states[cid])
        figures["containers marked exited"] += len(running_at_kill & set(states))
        created = [cid for cid, (s, _) in states.items() if s == "created"]
        assert len(overlay_mounts_under(d.root)) == len(created), recovered
        assert log_holders(d.root) == {}
        assert container_cgroups(list(states)) == []
        present = [ref for ref in IMAGES if has_image(client, ref)]
        if present:  # the next run works on whatever the crash left
            out = client.containers.run(rng.choice(present), ["echo", str(round_)], remove=True)
            assert out == f"{round_}\n".encode()

    # after the last restart: every image pulls, a container runs, and the layers
    # the pulls produced (fresh or kept) match their blobs and digests
    for ref in IMAGES:
        client.images.pull(ref)
    out = client.containers.run(GAMMA, ["sh", "-c", "echo survived"], remove=True)
    assert out == b"survived\n"
    for c in client.containers.list(all=True):
        c.remove(force=True)
    assert store_problems(d.root) == []
    client.close()
    elapsed = time.monotonic() - began
    print(f"\nkills {figures['kills']}, recovered {figures['recovered']}, "
          f"check clean {figures['check clean']} ({elapsed:.1f} s; operations {ops}; "
          f"killed mid-download {figures['mid-download']}, mid-extract {figures['mid-extract']}; "
          f"containers reported exited (255) {figures['containers marked exited']})")
    assert figures["check clean"] == KILLS
    assert figures["recovered"] >= KILLS // 4  # most kills leave something to put right
    assert figures["mid-extract"] > 0 and figures["containers marked exited"] > 0


def _quietly(work) -> None:
    try:
        work()
    except Exception:  # the daemon dies under it: connection errors are the point
        pass


@pytest.fixture(scope="module")
def slow_crash_registry(built):
    from registry.server import RegistryServer
    server = RegistryServer(built.root, bandwidth_mbps=CRASH_MBPS).start()
    try:
        yield server
    finally:
        server.stop()


# --- each container state, one crash --------------------------------------------------

def test_restart_after_a_crash_puts_every_container_state_right(registry, daemon_on):
    """One kill with a container in each state dockerd's restore() distinguishes."""
    import json
    d = daemon_on(registry.url)
    client = d.client()
    client.images.pull(BETA)
    running = client.containers.run(BETA, LONG_RUN, detach=True, mem_limit="32m")
    auto = client.containers.run(BETA, LONG_RUN, detach=True, auto_remove=True)
    cut_start = client.containers.run(BETA, LONG_RUN, detach=True)
    created = client.containers.create(BETA, ["sh", "-c", "echo late start"])
    done = client.containers.run(BETA, ["sh", "-c", "exit 3"], detach=True)
    assert done.wait()["StatusCode"] == 3
    assert container_cgroups([running.id]) != []  # the limit made one
    d.kill()
    assert len(log_holders(d.root)) == 3  # the containers outlive the daemon, like shims
    # a start cut short after the fork: the record was not updated yet
    record_path = d.root / "containers" / cut_start.id / "config.v2.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "status": "created", "pid": 0}))
    # a create cut short before its record was written
    (d.root / "containers" / ("f" * 64) / "rootfs").mkdir(parents=True)
    (d.root / "containers" / "not a container").mkdir()  # must not keep the daemon down

    d.start()
    client = d.client()
    recovered = d.log_since()
    states = {c.id: (c.status, c.attrs["State"]["ExitCode"]) for c in client.containers.list(all=True)}
    assert states == {running.id: ("exited", 255), cut_start.id: ("exited", 255),
                      created.id: ("created", 0), done.id: ("exited", 3)}, recovered
    assert not (d.root / "containers" / ("f" * 64)).exists()
    assert log_holders(d.root) == {}
    assert container_cgroups([running.id, auto.id, cut_start.id]) == []
    assert overlay_mounts_under(d.root) == [str((d.root / "containers" / created.id / "rootfs").resolve())]
    assert "recovery: container %s was running: marked exited (255)" % running.id[:12] in recovered
    assert "recovery: container %s was running: removed (AutoRemove)" % auto.id[:12] in recovered
    assert "not a container is not a container dir: left as it is" in recovered
    assert "Traceback" not in recovered
    # the created container still starts; the exited ones stay exited and go away cleanly
    created.start()
    assert created.wait()["StatusCode"] == 0
    assert created.logs() == b"late start\n"
    for c in client.containers.list(all=True):
        c.remove(force=True)
    assert overlay_mounts_under(d.root) == []
    assert store_problems(d.root) == []
