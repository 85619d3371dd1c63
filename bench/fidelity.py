#!/usr/bin/env python3
"""How close is the model to docksim's engine?  The skeleton's bar: per-request
`total_s` of every pull and run within 15 % of the measurement, on hello.toml and
on scenarios the costs were not tuned for.

    sudo .venv/bin/python bench/fidelity.py [SCENARIO ...]

The model uses this machine's saved calibration (made first when there is
none), never costs fitted to these scenarios.  Prints one line per request and metric, then the worst |error| of total_s, and
exits 1 when any pull or run misses the bar.  Needs root (it measures).
"""
from __future__ import annotations

import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

import model  # noqa: E402
from harness.calibrate import calibrate  # noqa: E402
from model.profile import new_profile, profile_path, read_profile, write_profile  # noqa: E402
from analysis.compare import comparison_rows  # noqa: E402
from analysis.exchangeable import pooled_summaries  # noqa: E402
from harness.measure import measure, why_not_measurable  # noqa: E402
from vocab.scenario import load_scenario  # noqa: E402
from vocab.trace import summarize  # noqa: E402

DEFAULT = ["scenarios/hello.toml", "scenarios/three-clients.toml",
           "scenarios/shared-base.toml", "scenarios/slow-link.toml"]
BAR_PCT = 15.0


def main(paths: list[str]) -> int:
    reason = why_not_measurable()
    if reason:
        print(f"fidelity: {reason}", file=sys.stderr)
        return 2
    saved = profile_path("launcher")
    if not saved.exists():  # the model is fitted only through calibration's own workload
        write_profile(new_profile("launcher", calibrate("launcher")), saved)
    costs = read_profile(saved).costs
    print(f"costs: {saved}")
    worst = 0.0
    print(f"{'scenario':16s} {'request':9s} {'command':7s} {'metric':9s} "
          f"{'simulated':>10s} {'measured':>10s} {'error':>8s}")
    for path in paths or DEFAULT:
        scenario = load_scenario(PROJECT / path)
        sim_rows, real_rows = model.simulate(scenario, costs=costs), measure(scenario)
        sim, real = pooled_summaries(  # clients the scenario cannot tell apart, as one
            scenario, sim_rows, summarize(sim_rows, scenario.name, "sim", "model", scenario.replications),
            real_rows, summarize(real_rows, scenario.name, "real", "launcher", scenario.replications))
        commands = {(r["step"], r["client"], r["repeat"]): r["command"] for r in sim["requests"]}
        for row in comparison_rows(sim, real):
            command = commands[(row["step"], row["client"], row["repeat"])]
            error = row["error_pct"]
            text = "-" if error is None else f"{error:+.1f} %"
            print(f"{scenario.name:16s} s{row['step']}-c{row['client']}-r{row['repeat']:<3d} "
                  f"{command:7s} {row['metric']:9s} {row['simulated_s']:10.4f} "
                  f"{row['measured_s']:10.4f} {text:>8s}")
            if row["metric"] == "total_s" and command in ("pull", "run") and error is not None:
                worst = max(worst, abs(error))
    verdict = "meets" if worst <= BAR_PCT else "misses"
    print(f"worst |error| of total_s over pulls and runs: {worst:.1f} % ({verdict} the {BAR_PCT:.0f} % bar)")
    return 0 if worst <= BAR_PCT else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
