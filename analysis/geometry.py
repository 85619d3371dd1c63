"""Keeping millisecond phases visible next to second-long ones.

A 5 ms ``create`` beside a 1.6 s download is a fraction of a pixel at true
scale.  The charts therefore draw every non-empty bar at least a minimum width
(a fraction of the axis, so it shows on a projector) and make room for it in
one of two ways, both pure functions here:

* ``sequential_bars`` (timeline): a widened bar pushes the bars after it in the
  same row to the right, so bars never hide one another; starts move by at
  most the widening of their predecessors, and the true durations are printed.
* ``stacked_widths`` (comparison): the width given to small segments is taken
  from the largest segment of the same bar, so the bar's total length, the
  number the chart is about, stays exact.
"""
from __future__ import annotations

# A bar is never drawn narrower than this fraction of the axis span:
# about 8 px of a 1600 px slide, visible from the back row.
MIN_WIDTH_FRACTION = 0.008


def sequential_bars(intervals: list[tuple[float, float]],
                    min_width: float) -> list[tuple[float, float]]:
    """Drawn (left, width) for (start, end) intervals of one row.

    Intervals are handled in order of start.  A bar narrower than
    ``min_width`` is widened; a bar that began after its predecessor ended is
    pushed right if the widened predecessor now reaches past its start.
    Intervals that truly overlap keep their true start, so real overlap shows.
    The result is in the order of the input.
    """
    order = sorted(range(len(intervals)), key=lambda i: intervals[i])
    drawn: list[tuple[float, float] | None] = [None] * len(intervals)
    previous_true_end = previous_drawn_end = None
    for i in order:
        start, end = intervals[i]
        left = start
        if previous_drawn_end is not None and start >= previous_true_end:
            left = max(start, previous_drawn_end)
        width = max(end - start, min_width)
        drawn[i] = (left, width)
        previous_true_end = end if previous_true_end is None else max(previous_true_end, end)
        previous_drawn_end = (left + width if previous_drawn_end is None
                              else max(previous_drawn_end, left + width))
    return drawn  # type: ignore[return-value]


def stacked_widths(widths: list[float], min_width: float) -> list[float]:
    """Drawn widths for the segments of one stacked bar; zero stays zero.

    Non-zero segments narrower than ``min_width`` get ``min_width``; the
    added width is taken from the largest segment when it can spare it (it
    keeps at least ``min_width``), so the sum is unchanged.  When it cannot,
    the bar grows instead: visibility wins over exact length.
    """
    drawn = [0.0 if w <= 0 else max(w, min_width) for w in widths]
    extra = sum(drawn) - sum(max(w, 0.0) for w in widths)
    if extra > 0 and drawn:
        largest = max(range(len(drawn)), key=lambda i: drawn[i])
        if drawn[largest] - extra >= min_width:
            drawn[largest] -= extra
    return drawn
