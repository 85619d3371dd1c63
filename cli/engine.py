"""`daemon`: docksim's own Docker daemon in the foreground, for the stock docker CLI.

    python simulate.py daemon --socket /tmp/docksim.sock --root /tmp/docksim
    DOCKER_HOST=unix:///tmp/docksim.sock docker run --rm IMAGE echo hi

The command replaces itself with `python -m launcher` (execv): the daemon starts
without the model's and the charts' libraries, whose thread pools would keep a
rootless daemon from entering its user namespace (only a single-threaded process
may) and make every container's fork heavier.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def cmd_daemon(args, console) -> int:
    argv = [sys.executable, "-m", "launcher", "--socket", args.socket, "--root", args.root,
            "--registry", args.registry,
            "--max-concurrent-downloads", str(args.max_concurrent_downloads),
            "--extract", args.extract, "--log-level", args.log_level,
            "--max-download-attempts", str(args.max_download_attempts),
            "--retry-backoff-s", str(args.retry_backoff_s),
            "--read-timeout-s", str(args.read_timeout_s),
            "--max-layer-mb", str(args.max_layer_mb)] + (["--durable"] if args.durable else [])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
    return 1  # not reached


def register(sub) -> None:
    p = sub.add_parser("daemon", help="run docksim's daemon (Docker Engine API on a unix "
                                      "socket) in the foreground; rootless when not root")
    p.add_argument("--socket", required=True, help="unix socket to listen on (DOCKER_HOST=unix://PATH)")
    p.add_argument("--root", required=True, help="directory for the image store and containers")
    p.add_argument("--registry", default="http://127.0.0.1:5000",
                   help="registry for image names without a host, as Docker Hub is for dockerd")
    p.add_argument("--max-concurrent-downloads", type=int, default=3)
    p.add_argument("--extract", choices=("serial", "parallel"), default="serial",
                   help="layers bottom to top (Docker) or each as its bytes arrive")
    p.add_argument("--max-download-attempts", type=int, default=5,
                   help="tries per layer blob, as dockerd's option")
    p.add_argument("--retry-backoff-s", type=float, default=5.0,
                   help="wait this x the failures so far before a retry (dockerd: 5)")
    p.add_argument("--read-timeout-s", type=float, default=60.0,
                   help="give up on a blob connection silent this long, and resume")
    p.add_argument("--max-layer-mb", type=float, default=10_000,
                   help="refuse a layer whose uncompressed tar passes this many MB; 0: no limit")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--durable", action="store_true",
                   help="fsync the store's writes, so it survives a power loss too")
    p.set_defaults(func=cmd_daemon)
