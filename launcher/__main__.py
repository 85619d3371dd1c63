"""`python -m launcher --socket PATH --root DIR --registry URL`: run the daemon
in the foreground, like `dockerd`; SIGTERM or Ctrl-C stops it cleanly."""
from __future__ import annotations

import argparse
import sys

from launcher.service import serve_foreground

# one layer's uncompressed tar may not pass this (dockerd has no cap; docksim's
# daemon pulls from the network as root, so a gzip bomb must stop somewhere)
DEFAULT_MAX_LAYER_MB = 10_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher", description=__doc__)
    parser.add_argument("--socket", required=True, help="unix socket to listen on")
    parser.add_argument("--root", required=True, help="directory for the store and containers")
    parser.add_argument("--registry", default="http://127.0.0.1:5000",
                        help="registry for image names without a host (as Docker Hub is for dockerd)")
    parser.add_argument("--max-concurrent-downloads", type=int, default=3)
    parser.add_argument("--extract", choices=("serial", "parallel"), default="serial", help="layers bottom to top (Docker) or each as its bytes arrive")
    parser.add_argument("--max-layer-mb", type=float, default=DEFAULT_MAX_LAYER_MB,
                        help="refuse a layer whose uncompressed tar passes this many MB "
                             "(10^6 bytes); 0: no limit")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.max_layer_mb < 0:
        parser.error(f"--max-layer-mb: must not be negative, not {args.max_layer_mb:g}")
    max_layer_bytes = round(args.max_layer_mb * 1_000_000) if args.max_layer_mb else None
    return serve_foreground(args.socket, args.root, args.registry,
                            args.max_concurrent_downloads, args.log_level, extract=args.extract,
                            max_layer_bytes=max_layer_bytes)


if __name__ == "__main__":
    sys.exit(main())
