"""`simulate.py registry --listen 127.0.0.1:PORT --root DIR`: docksim's registry in the foreground.

The same server as `python -m registry serve`: the OCI distribution API (pull
and push) over plain HTTP on a loopback port, one log line per request on
stderr, SIGTERM or Ctrl-C to stop.  A port that is taken gives one line and
exit status 2.
"""
from __future__ import annotations

import logging
import sys


def cmd_registry(args, console) -> int:
    from registry.__main__ import serve
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    return serve(args)


def register(sub) -> None:
    from registry.__main__ import add_serve_arguments
    p = sub.add_parser("registry", help="run docksim's OCI registry in the foreground",
                       description=__doc__)
    add_serve_arguments(p)
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.set_defaults(func=cmd_registry)
