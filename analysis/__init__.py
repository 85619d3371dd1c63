"""Analysis of docksim traces: the comparison table and the lecture charts.

Knows traces and summaries (``vocab.trace``), never the model or the engine.

* ``analysis.compare``: simulated vs measured summary -> rows, CSV, error table
* ``analysis.charts``: timeline and comparison charts on a matplotlib Axes
* ``analysis.style``: the lecture style and reproducible ``save_figure``
"""
