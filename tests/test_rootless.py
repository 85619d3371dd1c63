"""Rootless mode: `simulate.py daemon` started by an unprivileged user (euid 65534).

Run as root, the test drops to `nobody` with `setpriv` for the daemon; run as
another user, it starts the daemon as that user.  The daemon must then enter its
own user namespace, pull, and `docker run --rm` an image; resource limits come
back as warnings.  Python may live where nobody cannot look (here
/root/.pyenv under a 0700 /root): then the daemon gets a private mount namespace
in which the closed directory is covered by an empty tmpfs and only Python's
tree is bound back, so nothing on the host changes.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import pytest

from harness.procs import stop_process
from tests.conftest import ALPHA, API_VERSION, REPO_ROOT, overlay_mounts_under
from tests.peers import DockerCli, installed_clis

NOBODY = 65534


def closed_ancestor(path: Path) -> tuple[Path, Path] | None:
    """The highest directory above ``path`` that others cannot enter, and its
    child on the way to ``path``; None if the whole way is open."""
    parts = Path(path).resolve().parts
    for i in range(2, len(parts)):
        here = Path(*parts[:i])
        if not os.stat(here).st_mode & 0o001:
            return here, Path(*parts[:i + 1])
    return None


def daemon_argv(sock: Path, root: Path, registry_url: str, work: Path) -> list[str]:
    python = [sys.executable, str(REPO_ROOT / "simulate.py"), "daemon", "--socket", str(sock),
              "--root", str(root), "--registry", registry_url]
    if os.geteuid() != 0:
        return python  # already unprivileged
    if shutil.which("setpriv") is None or shutil.which("unshare") is None:
        pytest.skip("setpriv/unshare (util-linux) are needed to drop to an unprivileged user")
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    closed = closed_ancestor(Path(sys.base_prefix))
    if closed is None:
        return drop + python
    hidden, keep = closed
    script = (f"set -e; mkdir {work}/keep; mount --bind {keep} {work}/keep; "
              f"mount -t tmpfs -o mode=0755,size=1m docksim-cover {hidden}; mkdir -p {keep}; "
              f"mount --move {work}/keep {keep}; exec \"$@\"")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            *drop, *python]


@pytest.fixture
def rootless_daemon(registry):
    work = Path(tempfile.mkdtemp(prefix="docksim-rootless-"))
    os.chmod(work, 0o755)
    sock, root = work / "d.sock", work / "root"
    if os.geteuid() == 0:
        os.chown(work, NOBODY, NOBODY)
    log = open(work / "daemon.log", "wb")
    proc = subprocess.Popen(daemon_argv(sock, root, registry.url, work), cwd=REPO_ROOT,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not _answers(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"rootless daemon did not start:\n{(work / 'daemon.log').read_text()}")
            time.sleep(0.05)
        yield proc, sock, work
    finally:
        stop_process(proc, grace_s=20)
        log.close()
        assert overlay_mounts_under(work) == []
        shutil.rmtree(work, ignore_errors=True)


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
            return True
        except OSError:
            return False


def test_rootless_pull_and_run(rootless_daemon, tmp_path):
    proc, sock, work = rootless_daemon
    with open(f"/proc/{proc.pid}/status") as status:
        uids = next(line for line in status if line.startswith("Uid:")).split()[1:]
    assert int(uids[1]) != 0  # the daemon's effective uid on the host
    log = (work / "daemon.log").read_text()
    assert log.count("rootless mode") == 1 and "no cgroups" in log

    client = docker.DockerClient(base_url=f"unix://{sock}", version=API_VERSION, timeout=60)
    try:
        client.images.pull("docksim-test/alpha", tag="1")
        out = client.containers.run(ALPHA, ["sh", "-c", "id -u; hostname; cat /proc/self/uid_map"],
                                    remove=True, hostname="rootless")
        uid_in, hostname, *uid_map = out.decode().split("\n")
        assert (uid_in, hostname) == ("0", "rootless")
        assert uid_map[0].split() == ["0", uids[1], "1"]  # root inside is the user outside
        info = client.info()
        assert "name=rootless" in info["SecurityOptions"]
        created = client.api.create_container(ALPHA, ["true"],
                                              host_config=client.api.create_host_config(mem_limit="16m"))
        assert any("memory limit discarded" in w for w in created["Warnings"])
        client.api.remove_container(created["Id"])
    finally:
        client.close()

    cli = DockerCli(installed_clis()[0].values[0], f"unix://{sock}", tmp_path / "cfg")
    done = cli("run", "--rm", ALPHA, "sh", "-c", "echo rootless run; exit 4")
    assert (done.returncode, done.stdout) == (4, "rootless run\n"), done.stderr
    assert cli.ok("ps", "-aq") == ""

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert not sock.exists()
    assert list((work / "root" / "containers").iterdir()) == []
    assert (work / "root").stat().st_uid == int(uids[1])  # the store belongs to the user
