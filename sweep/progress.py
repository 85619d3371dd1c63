"""The sweep's progress bar: points done, rate and time left, in a terminal or Jupyter.

Built on ``tqdm.auto``: in a terminal it is tqdm's text bar on stderr; in
Jupyter it is a widget when ipywidgets is installed, else the same text bar,
which Jupyter redraws in place.  Points found already done in the directory
count from the start (``initial``), so the rate and the time left are about
this run's work only.  A failed point's line is written above the bar.
"""
from __future__ import annotations

import sys
import warnings

from sweep.runner import failure_line


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (where stderr is no terminal but a bar still shows)."""
    shell = sys.modules.get("IPython")
    try:
        return shell is not None and "IPKernelApp" in shell.get_ipython().config
    except AttributeError:  # IPython imported, but no shell running
        return False


class ProgressBar:
    """A ``sweep.runner.Progress`` drawn with tqdm; ``enabled=None`` shows it
    only where someone watches (a terminal, or Jupyter)."""

    def __init__(self, enabled: bool | None = None, description: str = "sweep"):
        if enabled is None:
            enabled = in_jupyter() or sys.stderr.isatty()
        self.enabled = enabled
        self.description = description
        self.failures: list[str] = []
        self._bar = None

    def start(self, total: int, done: int) -> None:
        if not self.enabled:
            return
        with warnings.catch_warnings():
            # without ipywidgets, tqdm.auto warns and falls back to the text bar: that is fine
            warnings.simplefilter("ignore")
            from tqdm.auto import tqdm
            self._bar = tqdm(total=total, initial=done, desc=self.description, unit="point",
                             dynamic_ncols=True, smoothing=0.1)

    def advance(self, record: dict) -> None:
        if record.get("status") != "ok":
            line = failure_line(record)
            self.failures.append(line)
            if self._bar is not None:
                self._bar.write(line, file=sys.stderr)
        if self._bar is not None:
            self._bar.update(1)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
