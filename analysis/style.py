"""The lecture style: one look for every docksim chart, and reproducible files.

Figures are 16:9 (13.33 x 7.5 in) and saved at 120 dpi, i.e. 1600 x 900 px,
with type large enough for the back of a lecture hall (ticks 17 pt, axis labels
20 pt, titles 24 pt; see ``lecture.mplstyle``).

Colours come from the Okabe-Ito palette, which stays distinguishable for the
common forms of colour blindness; every phase of ``vocab.trace.PHASES`` has one
fixed colour, used by every chart.  The two sources are told apart by more than
colour, so a grey print still shows them:

* simulated (``sim``): solid bars with a thin dark edge, solid lines;
* measured (``real``): hatched bars with a dashed black edge, dashed lines
  with markers.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import matplotlib as mpl
import matplotlib.style
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from vocab.trace import PHASES

STYLE_PATH = Path(__file__).with_name("lecture.mplstyle")
FIGSIZE_IN = (40 / 3, 7.5)  # 16:9
DPI = 120            # savefig resolution: 13.33 in x 120 dpi = 1600 px
SVG_HASHSALT = "docksim"

OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9",
    "bluish green": "#009E73", "yellow": "#F0E442", "blue": "#0072B2",
    "vermillion": "#D55E00", "reddish purple": "#CC79A7",
}
REQUEST_GREY = "#BBBBBB"   # the client's view: neutral, drawn behind everything

PHASE_COLOURS: dict[str, str] = {
    "request": REQUEST_GREY,
    "resolve": OKABE_ITO["yellow"],
    "download": OKABE_ITO["sky blue"],
    "extract": OKABE_ITO["bluish green"],
    "pull": OKABE_ITO["blue"],
    "create": OKABE_ITO["orange"],
    "start": OKABE_ITO["vermillion"],
    "run": OKABE_ITO["reddish purple"],
    "remove": OKABE_ITO["black"],
}
assert tuple(PHASE_COLOURS) == PHASES, "one colour per phase, in PHASES order"

CLIENT = "client"          # the comparison's "rest of the request" segment
CLIENT_COLOUR = REQUEST_GREY
SOURCE_NAMES = {"sim": "simulated", "real": "measured"}


def phase_colour(phase: str) -> str:
    """The fixed colour of a phase (or of the comparison's client segment)."""
    return CLIENT_COLOUR if phase == CLIENT else PHASE_COLOURS[phase]


def hatch_colour(face: str) -> str:
    """Black hatching on light faces, white on dark ones, so stripes always show."""
    red, green, blue = to_rgb(face)
    luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    return "#000000" if luminance > 0.45 else "#FFFFFF"


def bar_style(source: str, colour: str) -> dict:
    """Keyword arguments for a bar (Rectangle/barh) of one source in one colour."""
    if source == "real":
        return {"facecolor": colour, "edgecolor": "#000000", "linewidth": 1.6,
                "linestyle": (0, (4, 2)), "hatch": "//",
                "hatchcolor": hatch_colour(colour)}
    return {"facecolor": colour, "edgecolor": "#333333", "linewidth": 0.8,
            "linestyle": "solid"}


def line_style(source: str, colour: str) -> dict:
    """Keyword arguments for a line (Axes.plot) of one source in one colour."""
    if source == "real":
        return {"color": colour, "linestyle": "--", "marker": "o", "markersize": 9}
    return {"color": colour, "linestyle": "-"}


@contextlib.contextmanager
def lecture_style() -> Iterator[None]:
    """Within this block, new figures and artists use the lecture style sheet."""
    with mpl.style.context(str(STYLE_PATH)):
        yield


def lecture_figure(nrows: int = 1, ncols: int = 1) -> tuple[Figure, Axes]:
    """A 16:9 figure in the lecture style, with constrained layout.

    Built without pyplot, so no GUI backend or global figure list is involved.
    Returns the figure and its Axes (an array of Axes when there are several).
    """
    with lecture_style():
        fig = Figure(figsize=FIGSIZE_IN, layout="constrained")
        axes = fig.subplots(nrows, ncols)
    return fig, axes


def _output_path(base: Path, suffix: str) -> Path:
    # Appended rather than with_suffix(): "hello.timeline" must stay whole.
    return base.with_name(base.name + suffix)


def save_figure(fig: Figure, base: str | Path, *, pdf: bool = False) -> list[Path]:
    """Write ``base.png`` and ``base.svg`` (and ``base.pdf`` if asked).

    The files are reproducible: the same figure gives the same bytes every time
    (no dates in the metadata, a fixed SVG hash salt), so regenerated slides
    only show up in version control when the picture changed.
    Parent directories are created.  Returns the paths written.
    """
    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    targets = [(".png", {}), (".svg", {"Date": None})]
    if pdf:
        targets.append((".pdf", {"CreationDate": None, "ModDate": None}))
    written = []
    with mpl.rc_context({"svg.hashsalt": SVG_HASHSALT}):
        for suffix, metadata in targets:
            path = _output_path(base, suffix)
            fig.savefig(path, dpi=DPI, metadata=metadata or None)
            written.append(path)
    return written


_TAG_PREFIX = "_docksim:"  # a leading "_" keeps tagged patches out of automatic legends


def bar_tag(source: str, phase: str) -> str:
    """The label a chart gives each of its bars: which source and which phase."""
    return f"{_TAG_PREFIX}{source}:{phase}"


def tag_of(artist) -> tuple[str, str] | None:
    """(source, phase) of a bar drawn by a docksim chart, else None."""
    label = artist.get_label() or ""
    if not label.startswith(_TAG_PREFIX):
        return None
    source, _, phase = label[len(_TAG_PREFIX):].partition(":")
    return source, phase


def format_duration(seconds: float) -> str:
    """A duration for a slide: ``4.2 ms``, ``41 ms``, ``2.07 s``."""
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1.0:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"
