#!/usr/bin/env python3
"""docksim: Docker's client-server architecture, simulated and measured.

  python simulate.py run SCENARIO --out DIR       the SimPy model's prediction
  python simulate.py measure SCENARIO --out DIR   the same scenario on a real engine (root)
  python simulate.py compare SCENARIO --out DIR   both, side by side, with an error table
  python simulate.py calibrate | validate | sweep | chart | daemon | check | registry   (see --help)

Bad input gets one line on stderr naming the file and key, and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli import command_modules  # noqa: E402
from vocab.schema import ScenarioError  # noqa: E402


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="simulate.py", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    for module in command_modules():
        module.register(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from rich.console import Console
    console = Console(highlight=False)
    try:
        return args.func(args, console)
    except ScenarioError as exc:
        print(f"docksim: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("docksim: interrupted; everything started was stopped", file=sys.stderr)
        return 130
    except Exception as exc:
        from harness.clients import MeasureError
        if isinstance(exc, MeasureError):
            print(f"docksim: measure failed: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
