#!/usr/bin/env python3
"""The long soak: 1,000 sequential and 100 concurrent `docker run --rm` on docksim's daemon.

    sudo .venv/bin/python bench/soak.py [--sequential 1000] [--concurrent 100] [--warmup 20]

One small busybox image is built and served by docksim's registry on 127.0.0.1;
a fresh daemon (`python -m launcher`) pulls it, runs a warm-up (``--warmup``
sequential runs and one burst of ``--concurrent``), and then the soak proper
(harness.soak_runs: in turn the Docker SDK's `run(remove=True)`, the docker
CLI's calls for `run --rm` (AutoRemove) made with the SDK, and the docker CLI
itself unless ``--no-docker-cli`` or not installed; half of each with a memory
and pids limit).  Afterwards the daemon's census (harness.census) must equal the
one taken before the first run: open fds, threads, child processes, zombies,
mounts below its root, container cgroups, namespaces, scratch files.  Its RSS
may not grow by more than ``--rss-bound-mib`` from the end of the warm-up to the
end of the soak, nor by more than ``--slope-bound-kib`` a run over the second
half of the sequential runs, and every run must exit 0 with its own output.
Prints a table; the exit status is 0 when every run gave the right answer and
nothing leaked, 1 otherwise, 2 for bad arguments or no root.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from harness.measure import remove_tree  # noqa: E402
from harness.soak import SoakReport, rss_slope_kib_per_run, soak, soak_daemon  # noqa: E402
from launcher.cgroups import CgroupManager  # noqa: E402
from registry.builder import build_images  # noqa: E402
from registry.server import RegistryServer  # noqa: E402
from vocab.scenario import parse_scenario  # noqa: E402

# One container record kept by mistake (Container, its process, events, log
# path) holds about 22 KiB with its events (tracemalloc, in-process daemon),
# over 20 MiB in 1,100 runs.  Measured here: +1.1-1.3 MiB after the warm-up,
# nearly all of it in the first 100 runs (the allocator settling after the
# burst), then 0.1-0.2 KiB a run.  So: at most 4 MiB in all, and at most 1 KiB
# a run over the second half (these bounds are for the default numbers of runs).
RSS_BOUND_MIB = 4.0
SLOPE_BOUND_KIB = 1.0
IMAGE = "docksim-soak/run:1"
IMAGE_TOML = f"""
[scenario]
name = "soak"

[[image]]
ref = "{IMAGE}"
layers = [ {{ name = "soak-base", size_mb = 3.0, compression = 2.5 }} ]

[[step]]
command = "run"
image = "{IMAGE}"
"""
KINDS = ("fds", "threads", "processes", "zombies", "mounts", "cgroups", "namespaces", "files")


def print_report(report: SoakReport, cgroups: bool, rss_bound_mib: float,
                 slope_bound_kib: float) -> list[str]:
    """The table; returns the reasons to fail."""
    print(f"{'phase':12} {'runs':>6} {'failures':>9} {'seconds':>9} {'runs/s':>8}")
    rows = (("warm-up", report.warmup, report.warmup_s),
            ("sequential", report.sequential, report.sequential_s),
            ("concurrent", report.concurrent, report.concurrent_s))
    for name, runs, seconds in rows:
        bad = sum(1 for r in runs if r.problem(cgroups))
        print(f"{name:12} {len(runs):6d} {bad:9d} {seconds:9.1f} {len(runs) / seconds:8.1f}")
    during = report.samples[:-1]  # the last sample is after the concurrent burst
    slope, late = rss_slope_kib_per_run(during), rss_slope_kib_per_run(during[len(during) // 2:])
    print(f"\ndaemon RSS: start {report.start.rss_kib / 1024:.1f} MiB, after warm-up "
          f"{report.before.rss_kib / 1024:.1f} MiB, end {report.after.rss_kib / 1024:.1f} MiB, "
          f"max {report.rss_max_kib / 1024:.1f} MiB; growth after warm-up "
          f"{report.rss_growth_kib / 1024:+.2f} MiB (bound {rss_bound_mib} MiB), "
          f"slope over the sequential runs {slope:+.2f} KiB/run, over their second half "
          f"{late:+.2f} KiB/run (bound {slope_bound_kib} KiB/run)")
    print(f"\n{'census':12} {'start':>7} {'warm':>7} {'peak':>7} {'end':>7}  leaked")
    start, before, after = (c.figures() for c in (report.start, report.before, report.after))
    for kind in KINDS:
        peak = f"{report.peak(kind):7d}" if kind in ("fds", "threads") else f"{'':7}"
        print(f"{kind:12} {start[kind]:7d} {before[kind]:7d} {peak} {after[kind]:7d}  "
              f"{'; '.join(report.leaks.get(kind, [])) or '-'}")
    print(f"\nevents (containers): {report.events}")
    failures = report.failures(cgroups)
    reasons = failures[:10] + ([f"... {len(failures) - 10} more failed runs"] if len(failures) > 10 else [])
    reasons += report.event_problems
    reasons += [f"leaked {kind}: {', '.join(items[:5])}" for kind, items in report.leaks.items()]
    if report.rss_growth_kib > rss_bound_mib * 1024:
        reasons.append(f"RSS grew by {report.rss_growth_kib / 1024:.1f} MiB")
    if late > slope_bound_kib:
        reasons.append(f"RSS still grows by {late:.2f} KiB a run")
    return reasons


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequential", type=int, default=1000)
    parser.add_argument("--concurrent", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rss-bound-mib", type=float, default=RSS_BOUND_MIB,
                        help="the most the RSS may grow after the warm-up")
    parser.add_argument("--slope-bound-kib", type=float, default=SLOPE_BOUND_KIB,
                        help="the most the RSS may grow per run over the second half")
    parser.add_argument("--no-docker-cli", action="store_true",
                        help="only the Docker SDK as client, not the docker CLI too")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    if min(args.sequential, args.concurrent, args.warmup) < 1:
        print("soak: --sequential, --concurrent and --warmup must be at least 1", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("soak: needs root (the daemon mounts and unshares)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="docksim-soak-"))
    try:
        build_images(parse_scenario(IMAGE_TOML, "soak"), work / "registry", cache_dir=work / "cache")
        with RegistryServer(work / "registry") as registry, \
                soak_daemon(work / "daemon", registry.url) as daemon:
            began = time.monotonic()
            report = soak(daemon, IMAGE, args.sequential, args.concurrent, args.warmup,
                          docker_cli=not args.no_docker_cli, progress=lambda text: print(f"  {text}", file=sys.stderr, flush=True))
            total_s = time.monotonic() - began
    except RuntimeError as exc:  # the daemon did not start
        print(f"soak: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            remove_tree(work)  # unmounts first: never delete through a leaked mount
    version = CgroupManager().version
    print(f"soak of docksim's daemon: {args.sequential} sequential + {args.concurrent} "
          f"concurrent `run --rm` after a warm-up of {args.warmup} + {args.concurrent}, "
          f"{total_s:.0f} s in all (with the settling); clients: {', '.join(report.styles)}; "
          f"cgroups {f'v{version}' if version else 'none'}")
    reasons = print_report(report, version is not None, args.rss_bound_mib, args.slope_bound_kib)
    if daemon.proc.returncode != 0:
        reasons.append(f"the daemon exited with status {daemon.proc.returncode} on SIGTERM")
    if daemon.mounts_after_stop:
        reasons.append(f"mounts left after the daemon stopped: {sorted(daemon.mounts_after_stop)}")
    print("verdict: " + ("clean" if not reasons else "FAILED\n  " + "\n  ".join(reasons)))
    return 1 if reasons else 0

if __name__ == "__main__":
    sys.exit(main())
