"""What every command shares: the console, the summary table, the meta block."""
from __future__ import annotations

from vocab.scenario import Scenario


MAX_TABLE_ROWS = 20


def summary_table(summary: dict, title: str):
    """A rich table of one summary.json: one row per request."""
    from rich.table import Table
    table = Table(title=title, title_justify="left")
    for column in ("request", "command", "image", "pull_s", "startup_s", "total_s"):
        table.add_column(column, justify="left" if column in ("request", "command", "image") else "right")
    shown = summary["requests"][:MAX_TABLE_ROWS]
    for r in shown:
        cells = [f"s{r['step']}-c{r['client']}-r{r['repeat']}", r["command"], r["image"]]
        cells += ["-" if r[m] is None else f"{r[m]:.3f}" for m in ("pull_s", "startup_s", "total_s")]
        table.add_row(*cells)
    hidden = len(summary["requests"]) - len(shown)
    if hidden:
        table.caption = f"… and {hidden} more requests in summary.json"
    return table


def meta(scenario: Scenario, extra: dict) -> dict:
    """The summary's `meta` block: where the numbers came from."""
    from analysis.report import machine_facts
    from launcher import VERSION
    return {"scenario_file": scenario.source, "seed": scenario.seed, "docksim": VERSION,
            "machine": machine_facts(), **extra}
