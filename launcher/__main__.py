"""`python -m launcher --socket PATH --root DIR --registry URL`: run the daemon
in the foreground, like `dockerd`; SIGTERM or Ctrl-C stops it cleanly.
`python -m launcher check --root DIR [--repair]` verifies a store (``launcher.check_cmd``)."""
from __future__ import annotations

import argparse
import sys

from launcher.service import serve_foreground


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["check"]:
        from launcher.check_cmd import main as check_main
        return check_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m launcher", description=__doc__)
    parser.add_argument("--socket", required=True, help="unix socket to listen on")
    parser.add_argument("--root", required=True, help="directory for the store and containers")
    parser.add_argument("--registry", default="http://127.0.0.1:5000",
                        help="registry for image names without a host (as Docker Hub is for dockerd)")
    parser.add_argument("--max-concurrent-downloads", type=int, default=3)
    parser.add_argument("--extract", choices=("serial", "parallel"), default="serial", help="layers bottom to top (Docker) or each as its bytes arrive")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--durable", action="store_true",
                        help="fsync every blob, layer and record (and its directory) before and "
                             "after it takes its name, so the store survives a power loss too")
    args = parser.parse_args(argv)
    return serve_foreground(args.socket, args.root, args.registry,
                            args.max_concurrent_downloads, args.log_level, extract=args.extract,
                            durable=args.durable)


if __name__ == "__main__":
    sys.exit(main())
