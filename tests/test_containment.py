"""Containment, tested from inside real containers on the real daemon.

Each test runs BusyBox shell snippets in a container started through the Docker
SDK on `python -m launcher`, and checks from the host what a container must not
reach: the host's processes, mounts and network interfaces; files outside its
rootfs (directly, through device nodes, or with the classic chroot escape); more
processes or memory than its limits (while the daemon and the host carry on);
writable kernel settings; capabilities beyond Docker's default set.  Run as root.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
from docker.errors import APIError

from launcher import capabilities
from launcher.cgroups import CgroupManager
from tests.conftest import ALPHA, running_daemon, sdk_client

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
              pytest.mark.usefixtures("no_containers_left")]

DOCKER_DEFAULT_CAPS = 0x00000000A80425FB  # CapEff of `docker run busybox` as root


@pytest.fixture(scope="module")
def daemon(registry, tmp_path_factory):
    with running_daemon(registry.url, tmp_path_factory.mktemp("contain-daemon")) as process:
        yield process


@pytest.fixture(scope="module")
def client(daemon):
    with sdk_client(daemon, ALPHA) as client:
        yield client


def sh(client, script: str, inspect=None, **kwargs) -> tuple[int, str, str]:
    """Run `sh -c script` in a fresh container: (status, stdout, stderr).
    ``inspect(container)`` is called after it exited, before it is removed."""
    container = client.containers.run(ALPHA, ["sh", "-c", script], detach=True, **kwargs)
    try:
        status = container.wait(timeout=30)["StatusCode"]
        out = container.logs(stdout=True, stderr=False).decode()
        err = container.logs(stdout=False, stderr=True).decode()
        if inspect is not None:
            inspect(container)
        return status, out, err
    finally:
        container.remove(force=True)


def status_word(text: str, key: str) -> str:
    """One field of /proc/PID/status."""
    return re.search(rf"^{key}:\s*(\S+)", text, re.M).group(1)


# -- what a container can see ------------------------------------------------------

def test_no_host_process_is_visible(client):
    """A new PID namespace: the shell is PID 1 and sees only itself and its
    children; a process the test runs on the host is neither listed nor signallable."""
    host_sleeper = subprocess.Popen(["sleep", "30"])
    try:
        status, out, err = sh(client, "echo /proc/[0-9]*; ps -o pid,comm; echo $$; "
                                      f"kill -0 {host_sleeper.pid}")
        assert host_sleeper.poll() is None  # still alive: the kill did not reach it
    finally:
        host_sleeper.kill()
        host_sleeper.wait()
    lines = out.splitlines()
    assert lines[0] == "/proc/1"  # only the shell exists while it expands the glob
    rows = [line.split() for line in lines[2:-1]]
    assert lines[1].split() == ["PID", "COMMAND"]
    assert {comm for _, comm in rows} == {"sh", "ps"}
    assert rows[0] == ["1", "sh"]
    assert lines[-1] == "1"
    assert status == 1 and "No such process" in err
    print(f"\nhost processes: {len(list(Path('/proc').glob('[0-9]*')))}; "
          f"seen in the container: {len(rows)}")


def host_mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def test_mount_table_shows_no_host_mount(client, daemon):
    """A new mount namespace after pivot_root: the container's table holds its
    rootfs and the kernel file systems the runtime mounted, none of the host's
    mounts (its cgroup file systems, the container's own rootfs mount point below
    the store, ...), and no mount root or source names a host path.  (Overlay's
    options name the store's layer directories, as under Docker's overlay2: the
    kernel prints them; they are not reachable.)"""
    host: set[str] = set()
    rootfs: list[str] = []

    def host_view(container):
        host.update(host_mount_points())
        rootfs.append(str(daemon.root / "containers" / container.id / "rootfs"))

    status, out, _ = sh(client, "cat /proc/self/mountinfo; echo ---; cat /proc/mounts",
                        inspect=host_view)
    assert status == 0
    info, mounts = out.split("---\n")
    rows = [line.split(" - ") for line in info.splitlines()]
    points = [left.split()[4] for left, _ in rows]
    roots = {left.split()[3] for left, _ in rows}
    sources = {right.split()[1] for _, right in rows}
    assert points[0] == "/" and rows[0][1].split()[0] == "overlay"
    assert all(p == "/" or p.split("/")[1] in ("proc", "dev", "sys") for p in points)
    assert [line.split()[1] for line in mounts.splitlines()] == points
    assert rootfs[0] in host and not [p for p in points if p.startswith(str(daemon.root))]
    assert not [p for p in points if p.startswith("/sys/fs/cgroup")]
    # a mount's root is a path inside its file system: "/", a /proc entry made
    # read-only, or one of the host's device nodes bound into /dev or over a
    # masked /proc file
    device_nodes = {"/null", "/zero", "/full", "/random", "/urandom", "/tty"}
    assert roots <= {"/", "/bus", "/fs", "/irq", "/sys", "/sysrq-trigger"} | device_nodes
    assert not [s for s in sources if s.startswith("/")]
    print(f"\nhost mounts: {len(host)}; container mounts: {len(points)}")


def test_only_loopback_network_interface(client):
    """A new network namespace with nothing in it (NetworkMode none): `lo` only,
    up, with 127.0.0.1 and no route elsewhere; the host's interfaces are absent."""
    status, out, err = sh(client, "ls /sys/class/net; echo ---; cat /proc/net/dev; echo ---; "
                                  "ip -o addr; echo ---; ip route; ping -c 1 -W 1 192.0.2.1")
    names, dev, addrs, routes = out.split("---\n")
    assert names.split() == ["lo"]
    assert [line.split(":")[0].strip() for line in dev.splitlines()[2:]] == ["lo"]
    assert {line.split()[1] for line in addrs.splitlines()} == {"lo"}
    assert "inet 127.0.0.1/8" in addrs
    # `ip route` printed nothing; the one line left is ping's own header
    assert [line.split()[0] for line in routes.splitlines()] == ["PING"]
    assert status == 1 and "Network is unreachable" in err
    host = sorted(os.listdir("/sys/class/net"))
    print(f"\nhost interfaces: {host}; container: {names.split()}")


# -- what a container can write ----------------------------------------------------

def test_writes_stay_in_the_containers_upper_dir(client, daemon):
    """Writes to /, /tmp and through `..` and /proc/1/root land in the container's
    writable layer (overlay's upper dir), never on the host's / or /tmp, nor in the
    image's layers."""
    token = secrets.token_hex(4)
    targets = {f"/escape-{token}": "a", f"/tmp/escape-{token}": "b",
               f"/../../../escape2-{token}": "c", f"/proc/1/root/../../escape3-{token}": "d",
               f"/proc/self/cwd/../../tmp/escape4-{token}": "e"}
    script = "cd /; " + "; ".join(f"echo {v} > {t}" for t, v in targets.items())
    found: dict[str, str] = {}

    def upper_files(container):
        upper = daemon.root / "containers" / container.id / "upper"
        for path in upper.rglob(f"escape*-{token}"):
            found["/" + str(path.relative_to(upper))] = path.read_text().strip()

    status, _, err = sh(client, script, inspect=upper_files)
    assert (status, err) == (0, "")
    assert found == {f"/escape-{token}": "a", f"/tmp/escape-{token}": "b",
                     f"/escape2-{token}": "c", f"/escape3-{token}": "d",
                     f"/tmp/escape4-{token}": "e"}
    for host_dir in (Path("/"), Path("/tmp")):
        assert list(host_dir.glob(f"escape*-{token}")) == []
    assert list((daemon.root / "layers").rglob(f"escape*-{token}")) == []


def host_block_device() -> tuple[int, int] | None:
    """(major, minor) of a block device the host itself can read, or None."""
    for entry in sorted(os.listdir("/sys/dev/block")):
        major, minor = map(int, entry.split(":"))
        node = Path(f"/tmp/docksim-blk-{os.getpid()}")
        try:
            os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(major, minor))
            with open(node, "rb") as f:
                f.read(1)
            return major, minor
        except OSError:
            continue
        finally:
            node.unlink(missing_ok=True)
    return None


def test_device_nodes_made_with_mknod_cannot_be_opened(client):
    """CAP_MKNOD is in Docker's default set, so nodes can be made, but not opened,
    in the rootfs nor in /dev: not the host's disk (when this host has a block
    device it can read itself), not even /dev/null's numbers.  The host's
    /dev/null bound into /dev still works."""
    nodes = [("c", 1, 3)]
    disk = host_block_device()
    if disk is not None:
        nodes.append(("b", *disk))
    script = "; ".join(f"mknod /tmp/n{i} {kind} {major} {minor} && mknod /dev/n{i} {kind} {major} "
                       f"{minor} && echo made; head -c 1 /tmp/n{i} && echo opened; "
                       f"head -c 1 /dev/n{i} && echo opened"
                       for i, (kind, major, minor) in enumerate(nodes))
    status, out, err = sh(client, script + "; echo x > /dev/null && echo dev-null-ok")
    assert out.split() == ["made"] * len(nodes) + ["dev-null-ok"]
    assert err.count("Permission denied") == 2 * len(nodes)
    print(f"\nnodes made but refused: {nodes} (block device readable on the host: {disk})")


def test_classic_chroot_escape_stays_in_the_container(client, tmp_path):
    """The classic escape: a process whose working directory lies outside its
    chroot climbs `..` to the real root and chroots there.  BusyBox's nsenter -r
    chroots and keeps the old working directory, which sets it up.  In a plain
    chroot on the host the escape reaches the host's / (the control); in a
    container, after pivot_root, the real root is the container's own."""
    marker = Path(f"/tmp/docksim-marker-{secrets.token_hex(4)}")
    marker.write_text("host\n")
    escape = (f"cd /; mkdir -p x; cp /bin/busybox x/; /bin/busybox nsenter -r/x /busybox sh -c "
              f"'cd ../../../../../../..; /busybox chroot . /bin/busybox sh -c "
              f"\"/bin/busybox ls /; /bin/busybox cat {marker}\"'")
    try:
        jail = tmp_path / "jail"
        (jail / "bin").mkdir(parents=True)
        shutil.copy(shutil.which("busybox"), jail / "bin" / "busybox")
        control = subprocess.run(["chroot", str(jail), "/bin/busybox", "sh", "-c", escape],
                                 capture_output=True, text=True, timeout=30)
        assert "host" in control.stdout.split(), control  # the escape works on a chroot
        status, out, err = sh(client, escape)
    finally:
        marker.unlink()
    assert "host" not in out
    _, image_root, _ = sh(client, "ls /")
    assert out.split() == sorted(image_root.split() + ["x"])
    assert status == 1 and "No such file or directory" in err
    print(f"\nchroot escape: host / reached from a chroot, container / from a container")


# -- limits: the container stops, the daemon and the host carry on --------------------

def cgroup_file(container, controller: str, name: str) -> Path:
    return CgroupManager().roots[controller] / container.id / name


def process_identities(pids) -> set[tuple[int, str]]:
    """(pid, start time) of each live process: a pid alone may be reused."""
    found = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                found.add((int(pid), f.read().rsplit(")", 1)[1].split()[19]))
        except (FileNotFoundError, ProcessLookupError):
            pass
    return found


def test_fork_bomb_stops_at_the_pids_limit(client, daemon):
    """A fork bomb whose members stay (each forks two, then becomes `sleep`), with
    --pids-limit 64: the cgroup fills up to 64 and no further, the kernel refuses
    the rest (pids.events counts them); meanwhile the daemon answers, the host
    forks, a new container runs.  `docker kill` ends all of it (PID 1 dies, the
    kernel kills the rest of its PID namespace)."""
    if "pids" not in CgroupManager().roots:
        pytest.skip("no pids cgroup controller on this host")
    limit = 64
    bomb_script = "b(){ b & b & exec sleep 60; }; b 2>/dev/null"
    bomb = client.containers.run(ALPHA, ["sh", "-c", bomb_script], detach=True,
                                 pids_limit=limit, nano_cpus=500_000_000)
    try:
        current, deadline = 0, time.monotonic() + 10
        while current < limit and time.monotonic() < deadline:
            time.sleep(0.05)
            current = int(cgroup_file(bomb, "pids", "pids.current").read_text())
        time.sleep(0.3)  # the refused members exit; the others hold their slots
        members = process_identities(cgroup_file(bomb, "pids", "cgroup.procs").read_text().split())
        events = cgroup_file(bomb, "pids", "pids.events").read_text().split()
        refused = int(events[events.index("max") + 1])
        assert current == limit and 0 < len(members) <= limit and refused > 0
        assert client.ping() is True
        assert subprocess.run(["true"], timeout=10).returncode == 0
        assert client.containers.run(ALPHA, ["echo", "alive"], remove=True) == b"alive\n"
        bomb.reload()
        assert bomb.attrs["State"]["Running"] is True
        bomb.kill()
        assert bomb.wait(timeout=10)["StatusCode"] == 137
        assert process_identities(pid for pid, _ in members) == set()
    finally:
        bomb.remove(force=True)
    assert daemon.proc.poll() is None
    print(f"\nfork bomb: {current} processes at most (limit {limit}), {refused} forks refused, "
          f"{len(members)} held until the kill")


def test_memory_hog_is_oom_killed_and_the_daemon_carries_on(client, daemon):
    """`tail /dev/zero` under --memory 16m is OOM-killed (137, OOMKilled) while a
    container beside it finishes normally; the daemon is the same live process,
    the host still has its memory."""
    daemon_pid = daemon.proc.pid
    neighbour = client.containers.run(ALPHA, ["sh", "-c", "sleep 1; echo fine"], detach=True)
    hog = client.containers.run(ALPHA, ["/bin/busybox", "tail", "/dev/zero"], detach=True,
                                mem_limit="16m")
    try:
        assert hog.wait(timeout=30)["StatusCode"] == 137
        hog.reload()
        assert hog.attrs["State"]["OOMKilled"] is True
        assert neighbour.wait(timeout=30)["StatusCode"] == 0
        assert neighbour.logs() == b"fine\n"
        neighbour.reload()
        assert neighbour.attrs["State"]["OOMKilled"] is False
    finally:
        hog.remove(force=True)
        neighbour.remove(force=True)
    assert daemon.proc.poll() is None and daemon.proc.pid == daemon_pid
    assert client.ping() is True
    with open("/proc/meminfo") as f:
        available_mb = int(re.search(r"MemAvailable:\s+(\d+)", f.read()).group(1)) // 1024
    assert available_mb > 64
    print(f"\nmemory hog: OOM-killed at 16 MB; host MemAvailable {available_mb} MB")


# -- kernel interfaces -------------------------------------------------------------

def test_proc_sys_and_sys_are_read_only(client):
    """Writing a kernel setting back unchanged fails with EROFS in /proc/sys and
    /sys (read-only, as Docker mounts them), and /proc/sys, /proc/irq, /proc/bus,
    /proc/fs and /sys show `ro` in the mount table."""
    settings = ("/proc/sys/kernel/shmmax", "/proc/sys/vm/swappiness", "/sys/class/net/lo/mtu")
    script = ("".join(f"read v < {path}; echo $v > {path} || echo refused; " for path in settings)
              + "touch /sys/docksim || echo refused; "
              "echo ---; cat /proc/self/mountinfo")
    status, out, err = sh(client, script)
    verdicts, info = out.split("---\n")
    assert verdicts.split() == ["refused"] * 4
    assert err.count("Read-only file system") == 4
    options = {left.split()[4]: left.split()[5].split(",")
               for left in (line.split(" - ")[0] for line in info.splitlines())}
    readonly = {"/proc/sys", "/proc/irq", "/proc/bus", "/proc/fs", "/sys"} & set(options)
    assert {"/proc/sys", "/sys"} <= readonly
    assert all("ro" in options[p] for p in readonly)
    assert "rw" in options["/proc"]


def test_masked_kernel_files_are_empty(client):
    """What Docker masks (/proc/kcore, /proc/keys, /proc/timer_list, /sys/firmware,
    ...): the host's /dev/null over each file, an empty read-only tmpfs over each
    directory, for every one this kernel has."""
    from launcher.container_init import MASKED_PATHS
    present = [p for p in MASKED_PATHS if os.path.exists(p)]
    assert present, "this kernel has none of the masked paths"
    script = "; ".join(f"if [ -d {p} ]; then echo {p} $(ls -A {p} | wc -l); "
                       f"else echo {p} $(cat {p} | wc -c); fi" for p in present)
    status, out, _ = sh(client, script)
    assert status == 0
    assert dict(line.split() for line in out.splitlines()) == {p: "0" for p in present}
    print(f"\nmasked: {present}")


# -- capabilities ----------------------------------------------------------------

def caps(text: str) -> dict[str, int]:
    return {key: int(status_word(text, key), 16)
            for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}


def test_root_in_a_container_has_dockers_default_capabilities(client):
    """CapEff = CapPrm = CapBnd = 0xa80425fb, the mask `docker run` gives (runc
    leaves the inheritable and ambient sets empty); a non-root user keeps the
    bounding set and has no effective capability at all."""
    status, out, _ = sh(client, "cat /proc/self/status")
    assert status == 0
    assert capabilities.DEFAULT_MASK == DOCKER_DEFAULT_CAPS
    assert caps(out) == {"CapInh": 0, "CapPrm": DOCKER_DEFAULT_CAPS, "CapEff": DOCKER_DEFAULT_CAPS,
                         "CapBnd": DOCKER_DEFAULT_CAPS, "CapAmb": 0}
    status, out, _ = sh(client, "cat /proc/self/status", user="nobody")
    assert caps(out) == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": DOCKER_DEFAULT_CAPS,
                         "CapAmb": 0}
    assert status_word(out, "Uid") == "65534"


def test_default_capabilities_forbid_what_docker_forbids(client):
    """Without SYS_ADMIN: no mount, no sethostname; without NET_ADMIN: no link
    change; while CHOWN, NET_RAW (ping) and SYS_CHROOT work."""
    status, out, err = sh(client, "mount -t tmpfs none /tmp || echo no-mount; "
                                  "hostname other || echo no-hostname; "
                                  "ip link set lo mtu 1500 || echo no-netadmin; "
                                  "chown 65534 /tmp && echo chown; "
                                  "ping -c 1 -W 1 127.0.0.1 >/dev/null && echo ping; "
                                  "chroot / true && echo chroot")
    assert out.split() == ["no-mount", "no-hostname", "no-netadmin", "chown", "ping", "chroot"]
    assert "Operation not permitted" in err


def test_cap_add_and_cap_drop(client):
    """`--cap-add NET_ADMIN --cap-drop CHOWN` moves both bits; `--cap-drop ALL
    --cap-add CHOWN` leaves one; `--cap-add ALL` gives what the daemon has; the
    request's CapAdd/CapDrop show in inspect."""
    status, out, err = sh(client, "grep CapEff /proc/self/status; ip link set lo mtu 1500 "
                                  "&& echo netadmin; chown 65534 /tmp || echo no-chown",
                          cap_add=["NET_ADMIN"], cap_drop=["CAP_CHOWN"])
    net_admin, chown = 1 << 12, 1 << 0
    assert int(status_word(out, "CapEff"), 16) == DOCKER_DEFAULT_CAPS & ~chown | net_admin
    assert out.split()[2:] == ["netadmin", "no-chown"]
    _, out, _ = sh(client, "grep CapEff /proc/self/status", cap_drop=["ALL"], cap_add=["chown"])
    assert int(status_word(out, "CapEff"), 16) == chown
    _, out, _ = sh(client, "grep CapEff /proc/self/status", cap_add=["ALL"])
    with open("/proc/self/status") as f:
        host_bounding = int(status_word(f.read(), "CapBnd"), 16)
    assert int(status_word(out, "CapEff"), 16) == capabilities.ALL_MASK & host_bounding
    container = client.containers.create(ALPHA, ["true"], cap_add=["SYS_PTRACE"])
    try:
        assert container.attrs["HostConfig"]["CapAdd"] == ["SYS_PTRACE"]
    finally:
        container.remove()


@pytest.mark.parametrize("kwargs, message", [
    ({"cap_add": ["CAP_NOPE"]}, 'unknown capability: "CAP_NOPE"'),
    ({"cap_drop": ["bogus"]}, 'unknown capability: "CAP_BOGUS"'),
    ({"privileged": True}, "does not run privileged containers"),
])
def test_bad_capabilities_are_refused_with_400(client, kwargs, message):
    with pytest.raises(APIError) as raised:
        client.containers.create(ALPHA, ["true"], **kwargs)
    assert raised.value.status_code == 400
    assert message in raised.value.explanation
