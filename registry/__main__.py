"""Command line for the registry.

    python -m registry serve --root DIR --listen 127.0.0.1:PORT
                             [--bandwidth-mbps X] [--rtt-ms Y] [--ready-file F]
                             [--auth token] [--faults SPEC] [--faults-seed N]
                             [--faults-replication R]
                             [--fail-once-after BYTES]
                             [--max-blob-mb MB] [--upload-idle-s S]
    python -m registry build SCENARIO.toml --root DIR [--cache-dir DIR]

`serve` runs in the foreground, like `docker-registry serve`, until SIGTERM or
SIGINT.  Once it listens it writes `HOST:PORT` to the ready file (so a port of
0 can be discovered); the file is removed on exit.  A port already in use gives
one line on stderr and exit status 2.  Logs (one line per request) go to stderr.

`--faults` makes the registry misbehave on purpose (see `registry.faults` and
the scenario key `[registry] faults`), e.g.
`--faults "error_503_rate=0.1,stall_rate=0.1,stall_s=2"`, or
`--faults FILE.toml` (a scenario, or a file of those keys alone).  A bad
key or value is one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
from pathlib import Path

from registry.layout import write_atomic
from registry.server import NAMESPACE_NET, allowed_address
from registry.uploads import IDLE_LIMIT_S

EXIT_USAGE = 2
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _listen_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        address = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        address, number = None, -1
    if address is None or not allowed_address(host) or not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a loopback IPv4 address with a port, like 127.0.0.1:5000 "
            f"(or one in docksim's namespace range {NAMESPACE_NET})")
    return host, number


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {text}")
    return value


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    """The options of `serve` (shared with `simulate.py registry`)."""
    serve.add_argument("--root", required=True, help="registry root directory")
    serve.add_argument("--listen", required=True, type=_listen_address, help="127.0.0.1:PORT (0: any free port)")
    serve.add_argument("--bandwidth-mbps", type=_positive, default=None, help="shared link rate, Mbit/s")
    serve.add_argument("--rtt-ms", type=_non_negative, default=0.0, help="delay before every response")
    serve.add_argument("--ready-file", help="write HOST:PORT here once listening")
    serve.add_argument("--auth", choices=("none", "token"), default="none",
                       help="token: require bearer tokens from the built-in /token endpoint")
    serve.add_argument("--faults", default="", metavar="SPEC",
                       help="misbehave on layer blob GETs: KEY=VALUE,... with keys "
                            "error_503_rate, rate_limit_429_rate, retry_after_s, stall_rate, "
                            "stall_s, cut_rate, flip_rate, drip_rate, drip_kbps, max_faults "
                            "(rates are fractions of GETs), or a TOML file (a scenario with "
                            "[registry] faults, or those keys alone)")
    serve.add_argument("--faults-seed", type=int, default=0, metavar="N",
                       help="seed of the fault draws: with a scenario's seed (and "
                            "--faults-replication) they are the draws of its model")
    serve.add_argument("--faults-replication", type=int, default=0, metavar="R",
                       help="draw the faults of the model's replication R (default 0)")
    serve.add_argument("--fail-once-after", type=int, default=None, metavar="BYTES",
                       help="(tests) cut the first blob body that reaches BYTES bytes")
    serve.add_argument("--max-blob-mb", type=_positive, default=None,
                       help="refuse a pushed blob larger than this many MB (10^6 bytes); default: no limit")
    serve.add_argument("--upload-idle-s", type=_positive, default=IDLE_LIMIT_S,
                       help="drop an upload session (and its bytes) idle for this long")


def serve(args: argparse.Namespace) -> int:
    """Run the registry in the foreground until SIGTERM or SIGINT."""
    from registry.faults import Faults
    from registry.server import RegistryServer
    from vocab.faults import parse_faults_spec
    from vocab.schema import ScenarioError

    try:
        spec = parse_faults_spec(args.faults)
    except ScenarioError as error:
        sys.stderr.write(f"registry: {error}\n")
        return EXIT_USAGE
    host, port = args.listen
    ready = Path(args.ready_file) if args.ready_file else None
    if ready:
        ready.unlink(missing_ok=True)  # a stale file must not announce this run
    # Block the stop signals in every thread and wait for them here: no handler
    # ever runs in the middle of a lock, and the server threads inherit the mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    faults = None
    if spec.any or args.fail_once_after is not None:
        faults = Faults(cut_after_bytes=args.fail_once_after, spec=spec, seed=args.faults_seed,
                        replication=args.faults_replication)
        if spec.any:
            logging.getLogger("registry").info("registry faults: %s (seed %d, replication %d)",
                                               args.faults, args.faults_seed,
                                               args.faults_replication)
    max_blob_bytes = round(args.max_blob_mb * 1_000_000) if args.max_blob_mb else None
    server = RegistryServer(args.root, host, port, args.bandwidth_mbps, args.rtt_ms,
                            auth=args.auth, faults=faults, upload_idle_s=args.upload_idle_s,
                            max_blob_bytes=max_blob_bytes)
    try:
        server.start()
    except OSError as error:
        sys.stderr.write(f"registry: cannot listen on {host}:{port}: {error.strerror or error}\n")
        return EXIT_USAGE
    try:
        if ready:
            write_atomic(ready, f"{server.host}:{server.port}\n".encode())
        received = signal.sigwait(_STOP_SIGNALS)
        logging.getLogger("registry").info("registry stopping on %s", signal.Signals(received).name)
    finally:
        server.stop()
        if ready:
            ready.unlink(missing_ok=True)
    return 0


def _build(args: argparse.Namespace) -> int:
    from registry.builder import build_images
    from vocab.scenario import load_scenario
    from vocab.schema import ScenarioError

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as error:
        sys.stderr.write(f"{error}\n")
        return EXIT_USAGE
    report = build_images(scenario, Path(args.root), Path(args.cache_dir) if args.cache_dir else None)
    for image in report.images.values():
        sys.stdout.write(f"{image.ref} {image.manifest_digest} {image.compressed_bytes} B compressed\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m registry", description="docksim's OCI registry")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_arguments(commands.add_parser("serve", help="serve a registry root over HTTP"))
    build = commands.add_parser("build", help="build a scenario's images into a registry root")
    build.add_argument("scenario", help="scenario TOML file")
    build.add_argument("--root", required=True, help="registry root directory")
    build.add_argument("--cache-dir", help="keep built layers here for the next build")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return serve(args) if args.command == "serve" else _build(args)


if __name__ == "__main__":
    sys.exit(main())
