"""`python -m launcher --socket PATH --root DIR --registry URL`: run the daemon
in the foreground, like `dockerd`; SIGTERM or Ctrl-C stops it cleanly.
`python -m launcher check --root DIR [--repair]` verifies a store (``launcher.check_cmd``)."""
from __future__ import annotations

import argparse
import sys

from launcher.download import RetryPolicy
from launcher.service import serve_foreground

# one layer's uncompressed tar may not pass this (dockerd has no cap; docksim's
# daemon pulls from the network as root, so a gzip bomb must stop somewhere)
DEFAULT_MAX_LAYER_MB = 10_000


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
    parser.add_argument("--max-download-attempts", type=_at_least_one, default=5,
                        help="tries per layer blob, as dockerd's option (default 5)")
    parser.add_argument("--retry-backoff-s", type=_non_negative, default=5.0,
                        help="wait this x the failures so far before a retry (dockerd: 5)")
    parser.add_argument("--read-timeout-s", type=_positive, default=60.0,
                        help="give up on a blob connection silent this long, and resume")
    parser.add_argument("--max-layer-mb", type=float, default=DEFAULT_MAX_LAYER_MB,
                        help="refuse a layer whose uncompressed tar passes this many MB "
                             "(10^6 bytes); 0: no limit")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--durable", action="store_true",
                        help="fsync every blob, layer and record (and its directory) before and "
                             "after it takes its name, so the store survives a power loss too")
    args = parser.parse_args(argv)
    if args.max_layer_mb < 0:
        parser.error(f"--max-layer-mb: must not be negative, not {args.max_layer_mb:g}")
    max_layer_bytes = round(args.max_layer_mb * 1_000_000) if args.max_layer_mb else None
    retry = RetryPolicy(args.max_download_attempts, args.retry_backoff_s, args.read_timeout_s)
    return serve_foreground(args.socket, args.root, args.registry,
                            args.max_concurrent_downloads, args.log_level, extract=args.extract,
                            retry=retry, durable=args.durable,
                            max_layer_bytes=max_layer_bytes)


def _number(text: str, ok, what: str, kind=float):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}")
    return value


def _at_least_one(text: str) -> int:
    return _number(text, lambda v: v >= 1, "an integer of at least 1", int)


def _non_negative(text: str) -> float:
    return _number(text, lambda v: 0 <= v < float("inf"), "a number of at least 0")


def _positive(text: str) -> float:
    return _number(text, lambda v: 0 < v < float("inf"), "a number above 0")


if __name__ == "__main__":
    sys.exit(main())
