#!/usr/bin/env python3
"""Cached `docker run --rm IMAGE true`: docksim's daemon against dockerd, same client.

    sudo .venv/bin/python bench/engine_speed.py [--runs 30] [--rounds 3] [--warmup 3]

One small busybox image is built and served by docksim's registry
(registry.server.RegistryServer, unlimited link) on 127.0.0.1; docksim's daemon
(`python -m launcher`) and a real dockerd (harness.dockerd.run_dockerd) each pull
it with the stock docker CLI.  Then the same CLI times `docker run --rm IMAGE true`
against each, in alternating rounds so that drifts of the machine hit both alike,
with hyperfine when it is installed (else a Python loop).  As the floor, bare
`runc run` and `crun run` of an OCI bundle holding the same rootfs (crun inside
`unshare -m` with /sys/fs/cgroup/unified unmounted, which crun 1.8 needs on a
hybrid cgroup host).  Prints medians and the ratio to dockerd; the bar is
ours <= 0.5 x dockerd.  Needs root, dockerd, runc/crun and the docker CLI.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from harness.dockerd import run_dockerd  # noqa: E402
from harness.procs import stop_process  # noqa: E402
from registry.builder import build_images  # noqa: E402
from registry.layout import RegistryLayout  # noqa: E402
from registry.server import RegistryServer  # noqa: E402
from vocab.scenario import parse_scenario  # noqa: E402

BAR = 0.5
DOCKER = "/usr/local/bin/docker" if os.access("/usr/local/bin/docker", os.X_OK) else "docker"
IMAGE_TOML = """
[scenario]
name = "engine-speed"

[[image]]
ref = "docksim-bench/run:1"
layers = [ { name = "engine-speed-base", size_mb = 3.0, compression = 2.5 } ]

[[step]]
command = "run"
image = "docksim-bench/run:1"
"""


def timings_ms(argvs: dict[str, list[str]], runs: int, warmup: int, work: Path,
               wrapper: list[str] = ()) -> dict[str, list[float]]:
    """Wall time of each command, ``runs`` times after ``warmup``, in ms; the
    whole measurement runs under ``wrapper`` (e.g. `unshare -m ...`)."""
    if shutil.which("hyperfine"):
        out = work / "hyperfine.json"
        argv = ["hyperfine", "-N", "--warmup", str(warmup), "--runs", str(runs),
                "--export-json", str(out)]
        for name, command in argvs.items():
            argv += ["-n", name, shlex.join(command)]
        done = subprocess.run([*wrapper, *argv], capture_output=True, text=True)
        if done.returncode:  # hyperfine's own warnings (outliers) are not worth printing
            raise SystemExit(f"hyperfine failed: {done.stderr.strip()}")
        results = json.loads(out.read_text())["results"]
        return {r["command"]: [t * 1e3 for t in r["times"]] for r in results}
    loop = [sys.executable, __file__, "--loop", json.dumps([runs, warmup, argvs])]
    done = subprocess.run([*wrapper, *loop], check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def python_loop(spec: str) -> None:
    """`--loop`: the fallback timer, in its own process so it can run under a wrapper."""
    runs, warmup, argvs = json.loads(spec)
    times: dict[str, list[float]] = {name: [] for name in argvs}
    for i in range(warmup + runs):
        for name, argv in argvs.items():
            began = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            if i >= warmup:
                times[name].append((time.perf_counter() - began) * 1e3)
    print(json.dumps(times))


@contextmanager
def docksim_daemon(work: Path, registry_url: str):
    sock = work / "docksim.sock"
    log = open(work / "docksim.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "launcher", "--socket", str(sock), "--root",
                             str(work / "docksim-root"), "--registry", registry_url,
                             "--log-level", "WARNING"],
                            cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket(socket.AF_UNIX) as probe:
                if probe.connect_ex(str(sock)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"docksim's daemon did not start: {(work / 'docksim.log').read_text()}")
            time.sleep(0.05)
        yield str(sock)
    finally:
        stop_process(proc, grace_s=20)
        log.close()


def make_bundle(work: Path, registry_root: Path, layer_digests: list[str]) -> Path:
    """An OCI bundle (runc spec's config, `true` as the process) on the image's rootfs."""
    bundle = work / "bundle"
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    layout = RegistryLayout(registry_root)
    for digest in layer_digests:  # bottom first; the bench image has no whiteouts
        subprocess.run(["tar", "-xzf", str(layout.blob_path(digest)), "-C", str(rootfs)], check=True)
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"].update(terminal=False, args=["true"])
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def crun_wrapper() -> list[str]:
    """crun 1.8 refuses a hybrid cgroup layout: hide the cgroup2 mount from it."""
    unified = "/sys/fs/cgroup/unified"
    if not os.path.ismount(unified):
        return []
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f'umount {unified} && exec "$@"', "sh"]


def docker(sock: str, *args: str) -> list[str]:
    return [DOCKER, "-H", f"unix://{sock}", *args]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per engine, over all rounds")
    parser.add_argument("--rounds", type=int, default=3, help="alternations between the engines")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--loop", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop:
        python_loop(args.loop)
        return 0
    if os.geteuid() != 0:
        print("engine_speed: needs root (both daemons mount and unshare)", file=sys.stderr)
        return 2
    per_round = max(1, args.runs // args.rounds)
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="docksim-engine-speed-"))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        os.environ["DOCKER_CONFIG"] = str(work / "docker-config")  # leave ~/.docker alone
        report = build_images(parse_scenario(IMAGE_TOML, "engine_speed"), work / "registry",
                              cache_dir=work / "cache")
        registry = stack.enter_context(RegistryServer(work / "registry"))
        ref = f"127.0.0.1:{registry.port}/docksim-bench/run:1"
        ours = stack.enter_context(docksim_daemon(work, registry.url))
        theirs = stack.enter_context(run_dockerd())
        for sock in (ours, theirs):
            subprocess.run(docker(sock, "pull", "-q", ref), check=True, stdout=subprocess.DEVNULL)
        commands = {"docksim": docker(ours, "run", "--rm", ref, "true"),
                    "dockerd": docker(theirs, "run", "--rm", ref, "true")}
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, argv in commands.items():
                times[name] += timings_ms({name: argv}, per_round, args.warmup, work)[name]
        image = report.images["docksim-bench/run:1"]
        bundle = make_bundle(work, work / "registry", [report.layers[n].digest for n in image.layers])
        for runtime, wrapper in (("runc", []), ("crun", crun_wrapper())):
            if shutil.which(runtime):
                argv = [runtime, "run", "--bundle", str(bundle), f"docksim-bench-{runtime}"]
                times[f"{runtime} run"] = timings_ms({runtime: argv}, args.runs, args.warmup,
                                                     work, wrapper)[runtime]
    client = subprocess.run([DOCKER, "--version"], capture_output=True, text=True).stdout.strip()
    timer = "hyperfine" if shutil.which("hyperfine") else "a Python loop"
    print(f"docker run --rm IMAGE true, image present: {client}, {per_round * args.rounds} runs "
          f"per engine in {args.rounds} alternating rounds, timed with {timer}")
    reference = statistics.median(times["dockerd"])
    print(f"{'':14} {'median':>9} {'mean':>9} {'min':>9} {'vs dockerd':>11}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:14} {median:7.1f} ms {statistics.mean(values):6.1f} ms "
              f"{min(values):6.1f} ms {median / reference:10.2f}x")
    ratio = statistics.median(times["docksim"]) / reference
    print(f"docksim / dockerd = {ratio:.2f} (the bar: <= {BAR}): "
          f"{'met' if ratio <= BAR else 'NOT met'}")
    return 0 if ratio <= BAR else 1


if __name__ == "__main__":
    sys.exit(main())
