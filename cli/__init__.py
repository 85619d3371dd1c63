"""simulate.py's commands, one module per group; each module has `register(subparsers)`
that adds its commands with `func(args, console) -> exit status`."""
from __future__ import annotations

import importlib

# Order is the order of `simulate.py --help`.
MODULES = ("cli.experiment", "cli.library", "cli.calibration", "cli.validate", "cli.sweep", "cli.chart", "cli.engine", "cli.check", "cli.registry_cmd")


def command_modules():
    return [importlib.import_module(name) for name in MODULES]
