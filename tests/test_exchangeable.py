"""Requests a scenario cannot tell apart are compared as one group
(analysis/exchangeable.py): hand-made traces with hand-computed medians."""
from __future__ import annotations

from analysis.compare import comparison_rows
from analysis.exchangeable import pooled_summaries, pooled_summary, request_groups
from tests.test_model import image, layer, step, world
from vocab.trace import PhaseRow, summarize

POISSON = ('[[step]]\nat_s = 5.0\ncommand = "run"\nimage = "a:1"\nclients = 2\n'
           'arrivals = "poisson"\nrate_per_s = 1.0\nduration_s = 2.0\n')
SCENARIO = world(image("a:1", layer("a", 1)), step("pull", "a:1"),
                 step("run", "a:1", at_s=1.0, clients=3, repeat=2), POISSON)


def run_rows(source: str, replication: int, request: str, sent_s: float, startup_s: float,
             node: str = "node") -> list[PhaseRow]:
    """A cached run: its `request` row (0.5 s in all) and its `start` row."""
    client = int(request.split("-")[1][1:])
    common = dict(source=source, engine="e", replication=replication, node=node, client=client,
                  request=request, command="run", image="a:1", layer="", bytes=None)
    return [PhaseRow(phase="request", start_s=sent_s, end_s=sent_s + 0.5, **common),
            PhaseRow(phase="start", start_s=sent_s, end_s=sent_s + startup_s, **common)]


def measured(startups: dict[str, list[float]], node_of=lambda request: "node") -> list[PhaseRow]:
    return [row for request, values in startups.items() for replication, startup_s in enumerate(values)
            for row in run_rows("real", replication, request, 1.0, startup_s, node_of(request))]


def startup(summary: dict, request: str) -> float:
    (item,) = [i for i in summary["requests"]
               if f"s{i['step']}-c{i['client']}-r{i['repeat']}" == request]
    return item["startup_s"]


def test_clients_of_one_step_share_their_groups_median():
    # three clients x two replications: 0.1 ... 0.6; per client the medians would
    # be 0.25, 0.35, 0.45; pooled, every client gets the median of all six: 0.35
    rows = measured({"s1-c0-r0": [0.1, 0.4], "s1-c1-r0": [0.2, 0.5], "s1-c2-r0": [0.3, 0.6]})
    summary = summarize(rows, "t", "real", "e", 2)
    assert startup(summary, "s1-c0-r0") == 0.25
    pooled = pooled_summary(summary, rows, request_groups(SCENARIO, rows))
    assert [startup(pooled, f"s1-c{c}-r0") for c in range(3)] == [0.35] * 3


def test_repeats_nodes_and_poisson_arrivals_stay_apart():
    rows = measured({"s1-c0-r0": [0.1], "s1-c1-r0": [0.3], "s1-c0-r1": [0.9], "s1-c2-r0": [0.7],
                     "s2-c0-r0": [2.0], "s2-c1-r0": [4.0]},
                    node_of=lambda request: "far" if request == "s1-c2-r0" else "node")
    groups = request_groups(SCENARIO, rows)
    assert groups["s1-c0-r0"] == groups["s1-c1-r0"] == (1, 0, "node")
    assert len({groups[r] for r in ("s1-c0-r0", "s1-c0-r1", "s1-c2-r0", "s2-c0-r0", "s2-c1-r0")}) == 5
    pooled = pooled_summary(summarize(rows, "t", "real", "e", 1), rows, groups)
    assert [startup(pooled, r) for r in ("s1-c0-r0", "s1-c1-r0", "s1-c0-r1", "s1-c2-r0",
                                         "s2-c0-r0", "s2-c1-r0")] == [0.2, 0.2, 0.9, 0.7, 2.0, 4.0]


def test_a_comparison_judges_the_group_not_the_tie_breaking():
    # the model serves client 0 first (0.1, 0.2, 0.3); reality in random order:
    # per client the errors would be -50 %, 0 %, +50 %; pooled, both sides have
    # 0.2 and every client is off by 0
    sim = [row for c, value in enumerate([0.1, 0.2, 0.3])
           for row in run_rows("sim", 0, f"s1-c{c}-r0", 1.0, value)]
    real = measured({"s1-c0-r0": [0.2, 0.3, 0.1], "s1-c1-r0": [0.3, 0.1, 0.2],
                     "s1-c2-r0": [0.2, 0.1, 0.3]})
    sim_summary, real_summary = summarize(sim, "t", "sim", "model", 1), summarize(real, "t", "real", "e", 3)
    raw = {r["client"]: r["error_pct"] for r in comparison_rows(sim_summary, real_summary)
           if r["metric"] == "startup_s"}
    assert raw[0] == -50.0 and abs(raw[2] - 50.0) < 1e-9
    rows = comparison_rows(*pooled_summaries(SCENARIO, sim, sim_summary, real, real_summary))
    assert [r["error_pct"] for r in rows if r["metric"] == "startup_s"] == [0.0] * 3
