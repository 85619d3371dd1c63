"""The stock docker CLIs against docksim's daemon: every command of the list docksim supports.

Each test runs once per installed client: the newer CLI (/usr/local/bin/docker)
and Debian's 20.10 client (/usr/bin/docker), both pointed at one daemon
(`python -m launcher`) that pulls from docksim's registry and pushes to the CNCF
registry.  Names carry the client's version so the two runs never collide.
Run as root.  The last test starts the daemon the way a user does,
`simulate.py daemon`, and checks its socket refusal and clean stop.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launcher.cgroups import CgroupManager
from tests.conftest import ALPHA, BETA, REPO_ROOT, overlay_mounts_under, running_daemon
from tests.peers import DockerCli, cncf_registry, installed_clis


@pytest.fixture(scope="module")
def daemon(registry, tmp_path_factory):
    with running_daemon(registry.url, tmp_path_factory.mktemp("cli-daemon")) as process:
        yield process


@pytest.fixture(scope="module")
def cncf():
    with cncf_registry() as address:
        yield address


@pytest.fixture(params=installed_clis())
def docker(request, daemon, tmp_path) -> DockerCli:
    cli = DockerCli(request.param, daemon.base_url, tmp_path / "docker-config")
    cli.ok("pull", "-q", ALPHA)
    yield cli
    left = cli.ok("ps", "-aq")
    assert left == "", f"containers left behind: {left}"


def tag_of(docker: DockerCli) -> str:
    """A name part unique to this client: v28-2-2 or v20-10-24."""
    version = docker.ok("version", "--format", "{{.Client.Version}}").strip()
    return "v" + re.sub(r"[^0-9]+", "-", version).strip("-")


def test_version_and_info(docker):
    assert docker.ok("version", "--format", "{{.Server.APIVersion}}").strip() == "1.41"
    info = docker.ok("info", "--format", "{{.ServerVersion}} {{.Driver}} {{.OSType}}")
    assert info.split()[1:] == ["overlay", "linux"]
    assert "Server Version" in docker.ok("info")


def test_pull_images_inspect_tag_rmi(docker, built):
    docker("rmi", ALPHA)
    pulled = docker.ok("pull", ALPHA)
    assert f"Status: Downloaded newer image for {ALPHA}" in pulled
    image_id = built.report.images[ALPHA].config_digest
    assert docker.ok("image", "inspect", "--format", "{{.Id}}", ALPHA).strip() == image_id
    other = f"local/{tag_of(docker)}:2"
    docker.ok("tag", ALPHA, other)
    listed = docker.ok("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").splitlines()
    assert {f"{ALPHA} {image_id[7:19]}", f"{other} {image_id[7:19]}"} <= set(listed)
    assert f"Untagged: {other}" in docker.ok("rmi", other)
    assert docker.ok("image", "inspect", "--format", "{{.Id}}", ALPHA).strip() == image_id
    missing = docker("image", "inspect", "nosuch/image:1")
    assert missing.returncode == 1 and "No such image" in missing.stderr


def test_run_rm_passes_exit_status_and_keeps_streams_apart(docker):
    done = docker("run", "--rm", ALPHA, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert docker("run", "--rm", ALPHA, "true").returncode == 0


def test_run_pulls_a_missing_image_first(docker):
    docker("rmi", BETA)
    done = docker("run", "--rm", BETA, "echo", "pulled")
    assert (done.returncode, done.stdout) == (0, "pulled\n"), done.stderr
    assert f"Unable to find image '{BETA}' locally" in done.stderr


def test_run_environment_workdir_user_hostname(docker):
    script = 'echo "$GREETING"; pwd; id -u; id -g; hostname; echo "$HOME"'
    out = docker.ok("run", "--rm", "-e", "GREETING=hi there", "-w", "/srv/app", "-u", "nobody",
                    "--hostname", "box", ALPHA, "sh", "-c", script)
    assert out.splitlines() == ["hi there", "/srv/app", "65534", "65534", "box", "/nonexistent"]
    numeric = docker.ok("run", "--rm", "-u", "1000:1001", ALPHA, "sh", "-c", "id -u; id -g")
    assert numeric.split() == ["1000", "1001"]
    bad = docker("run", "--rm", "-u", "nosuchuser", ALPHA, "true")
    assert bad.returncode != 0 and "unable to find user nosuchuser" in bad.stderr


def test_detached_life_cycle(docker):
    name = f"life-{tag_of(docker)}"
    script = 'trap "echo term; exit 0" TERM; echo out; echo err >&2; while :; do sleep 0.1; done'
    cid = docker.ok("run", "-d", "--name", name, ALPHA, "sh", "-c", script).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    try:
        assert f"{name} Up" in docker.ok("ps", "--format", "{{.Names}} {{.Status}}")
        deadline = time.monotonic() + 5
        while "out" not in docker.ok("logs", name) and time.monotonic() < deadline:
            time.sleep(0.05)
        logs = docker("logs", name)
        assert (logs.stdout, logs.stderr) == ("out\n", "err\n")
        assert docker.ok("inspect", "--format", "{{.Name}} {{.State.Running}}", cid).split() == \
            [f"/{name}", "true"]
        assert docker.ok("stop", "-t", "5", name).strip() == name
        assert docker.ok("wait", name).strip() == "0"
        assert docker.ok("logs", name) == "out\nterm\n"
        assert docker.ok("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}",
                         name).split() == ["exited", "0"]
        assert f"{name} Exited (0)" in docker.ok("ps", "-a", "--format", "{{.Names}} {{.Status}}")
    finally:
        docker("rm", "-f", name)
    killed = f"killed-{tag_of(docker)}"
    docker.ok("run", "-d", "--name", killed, ALPHA, "sleep", "30")
    assert docker.ok("kill", killed).strip() == killed
    assert docker.ok("wait", killed).strip() == "137"
    again = docker("kill", killed)
    assert again.returncode == 1 and "is not running" in again.stderr
    assert docker.ok("rm", killed).strip() == killed
    gone = docker("inspect", killed)
    assert gone.returncode == 1 and "No such object" in gone.stderr


def test_limits_reach_inspect_and_the_cgroup(docker):
    name = f"limits-{tag_of(docker)}"
    cid = docker.ok("run", "-d", "--name", name, "--memory", "64m", "--pids-limit", "50",
                    "--cpus", "0.5", ALPHA, "sleep", "30").strip()
    try:
        shown = docker.ok("inspect", "--format", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} "
                          "{{.HostConfig.NanoCpus}}", name)
        assert shown.split() == [str(64 << 20), "50", "500000000"]
        roots = CgroupManager().roots
        if CgroupManager().version == 1:
            assert (roots["memory"] / cid / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
            assert (roots["cpu"] / cid / "cpu.cfs_quota_us").read_text().strip() == "50000"
        else:
            assert (roots["cpu"] / cid / "cpu.max").read_text().split() == ["50000", "100000"]
        assert (roots["pids"] / cid / "pids.max").read_text().strip() == "50"
    finally:
        docker.ok("rm", "-f", name)
    assert not (CgroupManager().roots["pids"] / cid).exists()


def test_events_replayed_and_streamed(docker):
    since = f"{time.time():.9f}"
    docker.ok("run", "--rm", "--name", f"ev-{tag_of(docker)}", ALPHA, "true")
    lines = docker.ok("events", "--since", since, "--until", f"{time.time() + 0.05:.9f}",
                      "--format", "{{json .}}").splitlines()
    messages = [json.loads(line) for line in lines]
    actions = [m["Action"] for m in messages if m["Type"] == "container"]
    assert actions == ["create", "start", "die", "destroy"]
    assert messages[0]["Actor"]["Attributes"]["name"] == f"ev-{tag_of(docker)}"
    plain = docker.ok("events", "--since", since, "--until", f"{time.time():.9f}")
    assert re.search(r"^\S+Z container die [0-9a-f]{64} \(.*exitCode=0", plain, re.M), plain

    follower = docker.popen("events", "--filter", "type=container", "--format", "{{.Action}}")
    try:
        time.sleep(0.3)  # the CLI subscribes before the run below
        docker.ok("run", "--rm", ALPHA, "true")
        seen = []
        while "destroy" not in seen:
            seen.append(follower.stdout.readline().strip())
        assert seen == ["create", "start", "die", "destroy"]
    finally:
        follower.terminate()
        follower.wait(timeout=10)


def test_tag_and_push_to_the_cncf_registry(docker, cncf, built):
    target = f"{cncf}/cli/alpha:{tag_of(docker)}"
    docker.ok("tag", ALPHA, target)
    pushed = docker.ok("push", target)
    assert f"The push refers to repository [{target.rsplit(':', 1)[0]}]" in pushed
    assert pushed.count(": Pushed") + pushed.count(": Layer already exists") == 2
    assert re.search(rf"{tag_of(docker)}: digest: sha256:[0-9a-f]{{64}} size: \d+", pushed)
    assert docker.ok("push", target).count("Layer already exists") == 2
    docker.ok("rmi", target)
    back = docker.ok("pull", target)
    assert f"Status: Downloaded newer image for {target}" in back
    assert docker.ok("image", "inspect", "--format", "{{.Id}}", target).strip() == \
        built.report.images[ALPHA].config_digest
    assert docker.ok("run", "--rm", target, "echo", "round trip") == "round trip\n"
    docker.ok("rmi", target)


def test_unknown_endpoints_and_unsupported_options_read_well(docker):
    missing = docker("network", "ls")
    assert missing.returncode == 1
    assert "Error response from daemon: page not found: GET /networks" in missing.stderr
    interactive = docker("run", "--rm", "-i", ALPHA, "true")
    assert interactive.returncode == 125
    assert "without stdin and terminal" in interactive.stderr


def test_simulate_daemon_command(registry, tmp_path):
    """`simulate.py daemon`: serves the CLI, one log line per request, refuses a
    taken socket with one line and status 2, and stops cleanly on SIGTERM."""
    sock, root = tmp_path / "d.sock", tmp_path / "root"
    argv = [sys.executable, str(REPO_ROOT / "simulate.py"), "daemon", "--socket", str(sock),
            "--root", str(root), "--registry", registry.url]
    log = open(tmp_path / "daemon.log", "w")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "daemon.log").read_text()
            time.sleep(0.05)
        docker = DockerCli(installed_clis()[0].values[0], f"unix://{sock}", tmp_path / "cfg")
        docker.ok("pull", "-q", ALPHA)
        cid = docker.ok("run", "-d", ALPHA, "sleep", "30").strip()
        taken = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert taken.returncode == 2
        assert taken.stderr.strip().splitlines() == [
            f"docksim daemon: {sock} is in use: another daemon listens there"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "daemon.log").read_text()
    assert re.search(r"daemon POST /v1\.\d+/containers/create 201 [\d.]+ ms$", text, re.M)
    assert not sock.exists()
    assert overlay_mounts_under(tmp_path) == []
    assert list((root / "containers").iterdir()) == []
    assert not (CgroupManager().roots["pids"] / cid).exists()
    assert Path(root).is_dir()


def test_the_sdk_does_the_same(daemon):
    """The Docker SDK through the same calls: run options, stdout/stderr apart,
    wait, stop, tag, list, remove."""
    client = daemon.client()
    try:
        client.images.pull("docksim-test/alpha", tag="1")
        container = client.containers.run(
            ALPHA, ["sh", "-c", 'echo "$GREETING $(pwd) $(id -u) $(hostname)"; echo oops >&2'],
            detach=True, name="sdk-options", environment={"GREETING": "hello"},
            working_dir="/srv", user="nobody", hostname="sdkbox")
        assert container.wait(timeout=30) == {"StatusCode": 0, "Error": None}
        assert container.logs(stdout=True, stderr=False) == b"hello /srv 65534 sdkbox\n"
        assert container.logs(stdout=False, stderr=True) == b"oops\n"
        assert client.containers.get("sdk-options").attrs["Config"]["Hostname"] == "sdkbox"
        container.remove()
        sleeper = client.containers.run(ALPHA, ["sleep", "30"], detach=True, name="sdk-stop")
        sleeper.stop(timeout=0)
        assert sleeper.wait(timeout=10)["StatusCode"] == 137
        sleeper.remove()
        assert client.images.get(ALPHA).tag("docksim-test/sdk", "copy")
        assert "docksim-test/sdk:copy" in {t for i in client.images.list() for t in i.tags}
        client.images.remove("docksim-test/sdk:copy")
        assert client.containers.list(all=True) == []
    finally:
        client.close()
