"""`python -m launcher --socket PATH --root DIR --registry URL`: run the daemon
in the foreground, like `dockerd`; SIGTERM or Ctrl-C stops it cleanly."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from launcher.daemon import Daemon


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher", description=__doc__)
    parser.add_argument("--socket", required=True, help="unix socket to listen on")
    parser.add_argument("--root", required=True, help="directory for the store and containers")
    parser.add_argument("--registry", default="http://127.0.0.1:5000",
                        help="registry for image names without a host (as Docker Hub is for dockerd)")
    parser.add_argument("--max-concurrent-downloads", type=int, default=3)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s daemon %(message)s")
    if os.geteuid() != 0:
        print("docksim daemon: needs root (namespaces, mounts); rootless mode is not there yet",
              file=sys.stderr)
        return 2
    daemon = Daemon(args.root, args.registry, args.max_concurrent_downloads)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: daemon.shutdown())
    try:
        daemon.serve(args.socket)
    except OSError as exc:
        print(f"docksim daemon: cannot listen: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
