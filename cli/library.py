"""`scenarios`: the scenario library, one line per file with its description.

Every ``*.toml`` under the directory (``scenarios/`` of the project by
default, subdirectories included) is loaded and checked exactly as `run`
would load it.  A file that does not load is still listed, with its one-line
error in place of the description, and the exit status is then 1, so a
broken file in the library cannot hide.
"""
from __future__ import annotations

import sys
from pathlib import Path

from vocab.schema import ScenarioError

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = PROJECT / "scenarios"


def scenario_files(root: Path) -> list[Path]:
    """Every scenario file under `root`: top-level files first, then each subdirectory."""
    return sorted(root.rglob("*.toml"), key=lambda p: (len(p.relative_to(root).parts), p.as_posix()))


def shown_path(path: Path) -> str:
    """The path as the user would type it: relative to the current directory when possible."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def library(root: Path) -> list[tuple[Path, str | None, str]]:
    """(file, scenario name or None when it failed to load, description or error)."""
    from vocab.scenario import load_scenario
    entries = []
    for path in scenario_files(root):
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            # the message already names the file; keep only the problem, on one line
            message = " ".join(str(exc).split())
            prefix = f"{path}: "
            entries.append((path, None, message[len(prefix):] if message.startswith(prefix) else message))
            continue
        entries.append((path, scenario.name, " ".join(scenario.description.split()) or "(no description)"))
    return entries


def cmd_scenarios(args, console) -> int:
    root: Path = args.dir
    if not root.is_dir():
        raise ScenarioError(f"{root}: no such scenario directory")
    entries = library(root)
    if not entries:
        raise ScenarioError(f"{root}: no scenario files (*.toml) here")
    paths = [shown_path(path) for path, _, _ in entries]
    width = max(len(p) for p in paths)
    failed = 0
    # plain print, not rich: one line per file whatever the terminal's width, easy to grep
    for shown, (_, name, text) in zip(paths, entries):
        if name is None:
            failed += 1
            print(f"{shown:<{width}}  ERROR: {text}")
        else:
            print(f"{shown:<{width}}  {text}")
    if failed:
        print(f"docksim: {failed} of {len(entries)} scenario files do not load", file=sys.stderr)
        return 1
    return 0


def register(sub) -> None:
    p = sub.add_parser("scenarios", help="list the scenario library with one-line descriptions")
    p.add_argument("dir", type=Path, nargs="?", default=DEFAULT_DIR,
                   help="directory searched recursively for *.toml (default: the project's scenarios/)")
    p.set_defaults(func=cmd_scenarios)
