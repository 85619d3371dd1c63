"""`python -m launcher --socket PATH --root DIR --registry URL`: run the daemon
in the foreground, like `dockerd`; SIGTERM or Ctrl-C stops it cleanly.
`python -m launcher check --root DIR [--repair]` verifies a store (``launcher.check_cmd``)."""
from __future__ import annotations

import argparse
import sys

from launcher.download import RetryPolicy
from launcher.options import add_options
from launcher.service import serve_foreground


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["check"]:
        from launcher.check_cmd import main as check_main
        return check_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m launcher", description=__doc__)
    add_options(parser)
    args = parser.parse_args(argv)
    max_layer_bytes = round(args.max_layer_mb * 1_000_000) if args.max_layer_mb else None
    retry = RetryPolicy(args.max_download_attempts, args.retry_backoff_s, args.read_timeout_s)
    return serve_foreground(args.socket, args.root, args.registry,
                            args.max_concurrent_downloads, args.log_level, extract=args.extract,
                            retry=retry, durable=args.durable,
                            max_layer_bytes=max_layer_bytes)


if __name__ == "__main__":
    sys.exit(main())
