"""docksim's charts, each drawn on a matplotlib ``Axes`` you pass in.

* ``plot_timeline`` / ``timeline_figure``: one trace as a Gantt chart
  (``analysis.timeline``);
* ``plot_comparison`` / ``comparison_figure``: model vs measurement per request
  and phase as stacked bars (``analysis.comparison_chart``).

Drawing on a given Axes lets a notebook or the CLI compose charts freely; the
``*_figure`` helpers make a lecture-style 16:9 figure for the common case.
Save with ``analysis.style.save_figure``.  Every bar carries a tag
(``analysis.style.tag_of``) naming its source and phase.
"""
from analysis.comparison_chart import comparison_figure, plot_comparison
from analysis.style import tag_of
from analysis.timeline import plot_timeline, timeline_figure

__all__ = ["plot_timeline", "timeline_figure", "plot_comparison", "comparison_figure", "tag_of"]
