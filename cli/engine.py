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
    from launcher.options import to_argv
    argv = [sys.executable, "-m", "launcher", *to_argv(args)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
    return 1  # not reached


def register(sub) -> None:
    from launcher.options import add_options
    p = sub.add_parser("daemon", help="run docksim's daemon (Docker Engine API on a unix "
                                      "socket) in the foreground; rootless when not root")
    add_options(p)
    p.set_defaults(func=cmd_daemon)
