"""The `check` command, shared by `python -m launcher check` and `simulate.py check`.

    python -m launcher check --root DIR [--repair] [--fast]

Prints one line per problem and a summary; exit status 0 when the store is
clean (or every problem was repaired), 1 when problems remain, 2 on bad input
(the directory is not a store, or `--repair` while a daemon uses it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

DEFAULT_ROOT = "/var/lib/docksim"


def add_arguments(parser: argparse.ArgumentParser, root_required: bool = True) -> None:
    parser.add_argument("--root", required=root_required, default=None if root_required else DEFAULT_ROOT,
                        help="the daemon's store directory (its --root)")
    parser.add_argument("--repair", action="store_true",
                        help="remove what is corrupt, and the images that depend on it, so that "
                             "the next pull fetches it again (the daemon must be stopped)")
    parser.add_argument("--fast", action="store_true",
                        help="skip unpacking each layer's blob again to compare it with the "
                             "unpacked layer (digests and structure are still checked)")


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    from launcher.storecheck import NotAStore, check_store
    from launcher.storefiles import try_lock
    root = Path(args.root)
    try:
        if args.repair:
            if not root.is_dir():
                raise NotAStore(f"{root}: no such directory")
            if try_lock(root) is None:
                print(f"docksim check: {root} is in use by a running daemon; stop it before "
                      "--repair", file=err)
                return 2
        report = check_store(root, repair=args.repair, content=not args.fast)
    except NotAStore as exc:
        print(f"docksim check: {exc}", file=err)
        return 2
    for problem in report.problems:
        print(problem.line(), file=out)
    print(report.summary(), file=out)
    return 1 if report.unrepaired else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))
