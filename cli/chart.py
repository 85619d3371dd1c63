"""`chart`: draw a lecture chart from a result directory.

Chart kinds live in ``KINDS``.  To add one, write ``draw(args) -> Figure``
(raise ScenarioError for bad input), add a ``ChartKind`` entry, and add any
options it needs in ``register`` with a help text saying which kind uses them.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vocab.schema import ScenarioError

FORMATS = (".png", ".svg", ".pdf")


@dataclass(frozen=True)
class ChartKind:
    draw: Callable[[argparse.Namespace], object]  # returns a matplotlib Figure
    help: str
    needs: tuple[str, ...] = ()                    # options it requires, by dest name


def _where(texts: list[str] | None) -> dict[str, object]:
    from vocab.overrides import parse_assignment
    fixed = {}
    for text in texts or []:
        key, values = parse_assignment(text)
        if len(values) != 1:
            raise ScenarioError(f"--where {key}: give one value")
        fixed[key] = values[0]
    return fixed


def draw_sweep(args: argparse.Namespace):
    from analysis.sweep_chart import sweep_figure
    from sweep.results import read_results
    try:
        rows, sidecar = read_results(args.dir)
    except FileNotFoundError as exc:
        raise ScenarioError(str(exc)) from None
    keys = list(sidecar["grid"])
    for option, key in (("--x", args.x), ("--hue", args.hue), *(("--where", k) for k in _where(args.where))):
        if key is not None and key not in keys:
            raise ScenarioError(f"{option} {key}: not a swept key (swept: {', '.join(keys)})")
    metrics = sidecar.get("metrics", [])
    if args.y not in metrics:
        raise ScenarioError(f"--y {args.y}: unknown metric (one of: {', '.join(metrics)})")
    for key, value in _where(args.where).items():
        rows = [row for row in rows if row[key] == value]
    if not rows:
        raise ScenarioError(f"{args.dir}: no finished points match --where")
    varying = [k for k in keys if k not in (args.x, args.hue) and len({repr(r[k]) for r in rows}) > 1]
    if varying:
        raise ScenarioError(f"{', '.join(varying)} also varies: pick one value with "
                            f"--where {varying[0]}=VALUE, or draw it as --hue")
    fixed = "".join(f", {text}" for text in args.where or [])  # the title says what was kept
    title = args.title if args.title is not None else f"{sidecar['scenario']['name']}: {args.y}{fixed}"
    try:
        return sweep_figure(rows, args.x, args.y, args.hue, title)
    except ValueError as exc:
        raise ScenarioError(str(exc)) from None


KINDS: dict[str, ChartKind] = {
    "sweep": ChartKind(draw_sweep, "a sweep's metric against a swept key, 95 % CI bands",
                       needs=("x", "y")),
}


def _trace_kind(name: str) -> Callable[[argparse.Namespace], object]:
    """A kind of ``analysis.chart_kinds``: drawn from a trace directory, options via --opt."""
    def draw(args: argparse.Namespace):
        from analysis.chart_kinds import KINDS as TRACE_KINDS, WRITES_FILE
        options = {}
        for text in args.opt or []:
            key, sep, value = text.partition("=")
            if not sep:
                raise ScenarioError(f"--opt {text}: give KEY=VALUE")
            options[key] = value
        if args.title is not None:
            options["title"] = args.title
        if name in WRITES_FILE:
            options["out"] = args.out
        try:
            return TRACE_KINDS[name](args.dir, options)
        except (ValueError, FileNotFoundError) as exc:
            raise ScenarioError(f"--kind {name}: {exc}") from None
    return draw


def _add_trace_kinds() -> None:
    from analysis.chart_kinds import HELP
    for name, text in HELP.items():
        KINDS[name] = ChartKind(_trace_kind(name), text)


_add_trace_kinds()


def cmd_chart(args, console) -> int:
    from analysis.style import save_figure
    kind = KINDS[args.kind]
    for name in kind.needs:
        if getattr(args, name) is None:
            raise ScenarioError(f"--kind {args.kind}: needs --{name}")
    out = args.out
    suffix = out.suffix.lower()
    base = out.with_suffix("") if suffix in FORMATS else out
    figure = kind.draw(args)
    if isinstance(figure, Path):   # the animation writes its own file (a GIF)
        console.print(f"wrote {figure}", soft_wrap=True)
        return 0
    written = save_figure(figure, base, pdf=suffix == ".pdf")
    console.print("wrote " + ", ".join(str(path) for path in written), soft_wrap=True)
    return 0


def register(sub) -> None:
    kinds = "; ".join(f"{name}: {kind.help}" for name, kind in KINDS.items())
    p = sub.add_parser("chart", help="draw a lecture chart from a result directory",
                       description=f"Chart kinds: {kinds}.")
    p.add_argument("dir", type=Path, help="a result directory (for sweep: what `sweep --out` wrote)")
    p.add_argument("--kind", choices=sorted(KINDS), required=True, help="which chart")
    p.add_argument("--out", type=Path, required=True,
                   help="FILE.png (an .svg is written beside it; .pdf adds a PDF)")
    p.add_argument("--title", help="the chart's title (default: scenario and metric)")
    p.add_argument("--x", help="sweep: the swept key on the x axis")
    p.add_argument("--y", help="sweep: the metric, e.g. total_s_median (see sweep.json)")
    p.add_argument("--hue", help="sweep: a second swept key, one line per value")
    p.add_argument("--where", action="append", metavar="KEY=VALUE",
                   help="sweep: keep only points with this value of a third swept key")
    p.add_argument("--opt", action="append", metavar="KEY=VALUE",
                   help="trace kinds: an option, e.g. request=s0-c1-r0, real=DIR, docker=DIR, "
                        "metric=total_s, at_s=1.5 (listed in analysis/chart_kinds.py)")
    p.set_defaults(func=cmd_chart)
