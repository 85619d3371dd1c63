"""The daemon's command-line options, declared once for `python -m launcher` and
for `simulate.py daemon` (which re-executes the former with the same options).

Like dockerd's flags: where the store lives, the registry that stands in for
Docker Hub, `--max-concurrent-downloads` and `--max-download-attempts` as
dockerd has them, and docksim's own limits and switches.
"""
from __future__ import annotations

import argparse

# one layer's uncompressed tar may not pass this (dockerd has no cap; docksim's
# daemon pulls from the network as root, so a gzip bomb must stop somewhere)
DEFAULT_MAX_LAYER_MB = 10_000


def _number(text: str, ok, what: str, kind=float):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}")
    return value


def at_least_one(text: str) -> int:
    return _number(text, lambda v: v >= 1, "an integer of at least 1", int)


def non_negative(text: str) -> float:
    return _number(text, lambda v: 0 <= v < float("inf"), "a number of at least 0")


def positive(text: str) -> float:
    return _number(text, lambda v: 0 < v < float("inf"), "a number above 0")


# (flag, argparse keywords); the flag's dest is its name without dashes
OPTIONS = (
    ("--socket", dict(required=True, help="unix socket to listen on (DOCKER_HOST=unix://PATH)")),
    ("--root", dict(required=True, help="directory for the image store and containers")),
    ("--registry", dict(default="http://127.0.0.1:5000",
                        help="registry for image names without a host, as Docker Hub is for dockerd")),
    ("--max-concurrent-downloads", dict(type=at_least_one, default=3)),
    ("--extract", dict(choices=("serial", "parallel"), default="serial",
                       help="layers bottom to top (Docker) or each as its bytes arrive")),
    ("--max-download-attempts", dict(type=at_least_one, default=5,
                                     help="tries per layer blob, as dockerd's option (default 5)")),
    ("--retry-backoff-s", dict(type=non_negative, default=5.0,
                               help="wait this x the failures so far before a retry (dockerd: 5)")),
    ("--read-timeout-s", dict(type=positive, default=60.0,
                              help="give up on a blob connection silent this long, and resume")),
    ("--max-layer-mb", dict(type=non_negative, default=DEFAULT_MAX_LAYER_MB,
                            help="refuse a layer whose uncompressed tar passes this many MB "
                                 "(10^6 bytes); 0: no limit")),
    ("--log-level", dict(default="INFO")),
    ("--durable", dict(action="store_true",
                       help="fsync every blob, layer and record (and its directory) before and "
                            "after it takes its name, so the store survives a power loss too")),
)


def add_options(parser: argparse.ArgumentParser) -> None:
    for flag, keywords in OPTIONS:
        parser.add_argument(flag, **keywords)


def to_argv(args: argparse.Namespace) -> list[str]:
    """The parsed options as `python -m launcher` takes them again."""
    argv: list[str] = []
    for flag, keywords in OPTIONS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if keywords.get("action") == "store_true":
            argv += [flag] if value else []
        else:
            argv += [flag, str(value)]
    return argv
