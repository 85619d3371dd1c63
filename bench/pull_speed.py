#!/usr/bin/env python3
"""Cold `docker pull`: docksim's daemon against a real dockerd, with the same client.

    sudo .venv/bin/python bench/pull_speed.py [--runs 5] [--layers 5] [--layer-mb 20]

One image of `--layers` random (incompressible) layers of `--layer-mb` MB each
is served on 127.0.0.1 by docksim's registry (a process of its own, unlimited
link) and, copied there with skopeo, by the CNCF registry (`docker-registry`;
`--source docksim` skips it).  The stock docker CLI pulls it from each engine
in turn, each pull from an empty store (`docker rmi` first; dockerd's store also
`docker image prune -f`), runs interleaved so that drifts of the machine hit
all alike.  docksim's daemon runs twice: with Docker's serial extraction order
(the default) and with `--extract parallel`.  Prints each engine's median and
its ratio to dockerd pulling from the same registry; the bar is
ours <= 0.7 x dockerd.  Needs root, dockerd and the docker CLI.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
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
from registry.builder import build_images  # noqa: E402
from registry.processes import RegistryUnavailable, cncf_registry, docksim_registry  # noqa: E402
from vocab.scenario import parse_scenario  # noqa: E402

BAR = 0.7
DOCKER = "/usr/local/bin/docker" if os.access("/usr/local/bin/docker", os.X_OK) else "docker"


def scenario_text(layers: int, layer_mb: float) -> str:
    rows = ",\n".join(f'  {{ name = "bench-random-{i}", size_mb = {layer_mb}, compression = 1.0 }}'
                      for i in range(layers))
    return (f'[scenario]\nname = "pull-speed"\n\n[[image]]\nref = "bench/random:1"\nlayers = [\n{rows},\n]\n'
            '\n[[step]]\ncommand = "pull"\nimage = "bench/random:1"\n')


@contextmanager
def docksim_daemon(work: Path, registry_url: str, extract: str):
    sock = work / f"docksim-{extract}.sock"
    argv = [sys.executable, "-m", "launcher", "--socket", str(sock), "--root", str(work / f"root-{extract}"),
            "--registry", registry_url, "--extract", extract, "--log-level", "WARNING"]
    log = open(work / f"daemon-{extract}.log", "wb")
    proc = subprocess.Popen(argv, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"pull_speed: docksim's daemon exited ({proc.returncode}); see {log.name}")
            try:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(str(sock))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("pull_speed: docksim's daemon did not listen") from None
                time.sleep(0.05)
        yield str(sock)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        log.close()


def docker(sock: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}")
    return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True, check=check)


def timed_cold_pull(sock: str, ref: str, prune: bool, every_ref: list[str]) -> float:
    """One `docker pull` into an empty store: first every tag of the image goes
    (both registries serve the same image, so one tag would keep its layers)."""
    docker(sock, "rmi", *every_ref, check=False)
    if docker(sock, "images", "-q").stdout.strip():
        raise SystemExit("pull_speed: the store is not empty before a cold pull")
    if prune:
        docker(sock, "image", "prune", "-f")
    started = time.perf_counter()
    docker(sock, "pull", "-q", ref)
    return time.perf_counter() - started


def copy_to_cncf(work: Path, source: str, dest: str) -> None:
    policy = work / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    subprocess.run(["skopeo", "--policy", str(policy), "copy", "--src-tls-verify=false",
                    "--dest-tls-verify=false", f"docker://{source}", f"docker://{dest}"],
                   check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--layer-mb", type=float, default=20.0)
    parser.add_argument("--source", choices=("both", "docksim", "cncf"), default="both",
                        help="which registry serves the image")
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        print("pull_speed: needs root and dockerd (apt-get install docker.io)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="docksim-pull-speed-"))
    try:
        scenario = parse_scenario(scenario_text(args.layers, args.layer_mb), "pull_speed")
        report = build_images(scenario, work / "registry", cache_dir=work / "cache")
        image = report.images["bench/random:1"]
        with ExitStack() as stack:
            ours = stack.enter_context(docksim_registry(work / "registry"))
            sources = {}
            if args.source in ("both", "docksim"):
                sources["docksim registry"] = f"{ours}/bench/random:1"
            if args.source in ("both", "cncf") and shutil.which("skopeo") is None:
                print("pull_speed: skopeo is not installed: the CNCF registry is left out", file=sys.stderr)
            elif args.source in ("both", "cncf"):
                try:
                    cncf = stack.enter_context(cncf_registry(work / "cncf"))
                except RegistryUnavailable as exc:
                    print(f"pull_speed: {exc}", file=sys.stderr)
                    return 2
                copy_to_cncf(work, f"{ours}/bench/random:1", f"{cncf}/bench/random:1")
                sources["CNCF registry"] = f"{cncf}/bench/random:1"
            engines = {
                "docksim serial": (stack.enter_context(docksim_daemon(work, f"http://{ours}", "serial")), False),
                "docksim parallel": (stack.enter_context(docksim_daemon(work, f"http://{ours}", "parallel")), False),
                "dockerd": (stack.enter_context(run_dockerd()), True),
            }
            times = {(source, name): [] for source in sources for name in engines}
            for (source, name) in times:  # warm-up: code paths, page cache, dockerd's HTTPS probe
                timed_cold_pull(engines[name][0], sources[source], engines[name][1], list(sources.values()))
            for _ in range(args.runs):
                for (source, name) in times:
                    sock, prune = engines[name]
                    times[(source, name)].append(timed_cold_pull(sock, sources[source], prune,
                                                                 list(sources.values())))
            for sock, _ in engines.values():
                docker(sock, "rmi", *sources.values(), check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"cold docker pull of {args.layers} x {args.layer_mb:g} MB random layers "
          f"({image.compressed_bytes / 1e6:.1f} MB) on loopback, median of {args.runs} runs each")
    print(f"{'registry':17s} {'engine':17s} {'median':>9s} {'min':>9s} {'max':>9s} {'vs dockerd':>11s}")
    verdicts = []
    for source in sources:
        base = statistics.median(times[(source, "dockerd")])
        for name in engines:
            values = times[(source, name)]
            ratio = statistics.median(values) / base
            print(f"{source:17s} {name:17s} {statistics.median(values) * 1000:7.0f} ms "
                  f"{min(values) * 1000:7.0f} ms {max(values) * 1000:7.0f} ms {ratio:10.2f} x")
        verdicts.append(statistics.median(times[(source, "docksim serial")]) / base)
    met = all(v <= BAR for v in verdicts)
    print(f"bar: ours (default, serial order) <= {BAR} x dockerd: "
          f"{', '.join(f'{v:.2f} x' for v in verdicts)} -> {'met' if met else 'missed'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
