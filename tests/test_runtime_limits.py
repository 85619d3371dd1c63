"""Resource limits for real, through the Docker SDK: memory (OOM kill -> 137 and
State.OOMKilled), pids (a fork loop is stopped), cpu quota (throttled, and visible
in the cgroup files), and each container's cgroup: there while it runs, gone
after it exits and is removed.  Run as root; the cgroup version (v1 or v2) is
whatever this host has, found the way the daemon finds it.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from launcher.cgroups import CgroupManager
from tests.conftest import ALPHA, running_daemon, sdk_client

BUSYBOX = "/bin/busybox"


@pytest.fixture(scope="module")
def daemon(registry, tmp_path_factory):
    if CgroupManager().version is None:
        pytest.skip(f"no cgroups here: {CgroupManager().why_not}")
    with running_daemon(registry.url, tmp_path_factory.mktemp("limits-daemon")) as process:
        yield process


@pytest.fixture(scope="module")
def client(daemon):
    with sdk_client(daemon, ALPHA) as client:
        yield client
        assert client.containers.list(all=True) == []


@pytest.fixture(scope="module")
def cgroups() -> CgroupManager:
    return CgroupManager()


def test_memory_limit_oom_kill_gives_137_and_oomkilled(client):
    """`tail /dev/zero` keeps one endless line in memory; at 8 MB the kernel's OOM
    killer ends it: exit status 137, State.OOMKilled, an `oom` event before `die`."""
    since = time.time()
    container = client.containers.run(ALPHA, [BUSYBOX, "tail", "/dev/zero"], detach=True,
                                      mem_limit="8m")
    try:
        assert container.wait(timeout=30)["StatusCode"] == 137
        container.reload()
        assert container.attrs["State"]["OOMKilled"] is True
        assert container.attrs["HostConfig"]["Memory"] == 8 << 20
        actions = [e["Action"] for e in client.events(since=since, until=time.time() + 0.05,
                                                      decode=True, filters={"container": container.id})]
        assert actions.index("oom") < actions.index("die")
    finally:
        container.remove(force=True)
    unlimited = client.containers.run(ALPHA, ["true"], detach=True)
    try:
        assert unlimited.wait(timeout=30)["StatusCode"] == 0
        unlimited.reload()
        assert unlimited.attrs["State"]["OOMKilled"] is False
    finally:
        unlimited.remove()


def test_pids_limit_stops_a_fork_loop(client):
    """With --pids-limit 8 (the shell plus 7), forking 20 sleepers fails at the
    8th: the shell says it cannot fork and gives up (status 2)."""
    script = "n=0; while [ $n -lt 20 ]; do sleep 5 & n=$((n + 1)); echo $n; done"
    container = client.containers.run(ALPHA, ["sh", "-c", script], detach=True, pids_limit=8)
    try:
        assert container.wait(timeout=30)["StatusCode"] == 2
        forked = container.logs(stdout=True, stderr=False).split()
        assert forked[-1] == b"7"
        assert b"can't fork" in container.logs(stdout=False, stderr=True)
    finally:
        container.remove(force=True)


def test_cpu_quota_throttles_a_busy_loop(client, cgroups):
    """--cpus 0.2 = 20 ms per 100 ms period: the cgroup says so, and a busy loop
    is throttled (the kernel counts the periods in cpu.stat)."""
    container = client.containers.run(ALPHA, ["sh", "-c", "while :; do :; done"], detach=True,
                                      nano_cpus=200_000_000)
    try:
        cgroup = cgroups.roots["cpu"] / container.id
        if cgroups.version == 1:
            assert (cgroup / "cpu.cfs_quota_us").read_text().strip() == "20000"
            assert (cgroup / "cpu.cfs_period_us").read_text().strip() == "100000"
            usage_file = cgroups.roots["cpu"] / container.id / "cpuacct.usage"
        else:
            assert (cgroup / "cpu.max").read_text().split() == ["20000", "100000"]
            usage_file = None
        began = time.monotonic()
        time.sleep(0.6)
        stat = dict(line.split() for line in (cgroup / "cpu.stat").read_text().splitlines())
        assert int(stat["nr_throttled"]) >= 2
        if usage_file is not None and usage_file.exists():  # cpu,cpuacct co-mounted
            used_s = int(usage_file.read_text()) / 1e9
            assert used_s < 0.4 * (time.monotonic() - began) + 0.05
    finally:
        container.remove(force=True)


def test_each_container_has_its_own_cgroup_removed_with_it(client, cgroups, daemon):
    """A container with a limit: `docksim/<id>` in every hierarchy while it runs; the
    process is in it; after exit and rm nothing of it is left: no cgroup, process,
    directory.  A container without limits gets no cgroup (cgroups.py says why)."""
    free = client.containers.run(ALPHA, ["sleep", "30"], detach=True)
    try:
        assert not any((cgroups.roots[name] / free.id).exists() for name in cgroups.roots)
    finally:
        free.remove(force=True)
    container = client.containers.run(ALPHA, ["sleep", "30"], detach=True, pids_limit=100)
    try:
        dirs = {cgroups.roots[name] / container.id for name in cgroups.roots}
        assert all(d.is_dir() for d in dirs)
        container.reload()
        pid = container.attrs["State"]["Pid"]
        assert all(str(pid) in (d / "cgroup.procs").read_text().split() for d in dirs)
        container.kill()
        container.wait(timeout=10)
        assert not any(d.exists() for d in dirs)
    finally:
        container.remove(force=True)
    assert not any((cgroups.roots[name] / container.id).exists() for name in cgroups.roots)
    assert not Path(f"/proc/{pid}").exists()
    assert not (daemon.root / "containers" / container.id).exists()


def test_invalid_limits_are_refused_like_dockerd(client):
    from docker.errors import APIError
    with pytest.raises(APIError) as raised:
        client.containers.create(ALPHA, ["true"], mem_limit="1m")
    assert raised.value.status_code == 400
    assert "Minimum memory limit allowed is 6MB" in str(raised.value)
    with pytest.raises(APIError) as raised:
        client.containers.create(ALPHA, ["true"], nano_cpus=64 * 10**9)
    assert "Range of CPUs" in str(raised.value)
