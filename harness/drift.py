"""Container costs sampled alongside a measurement, for the stretch it ran in.

On this VM, container operations (a fresh daemon's create, start and remove,
and the Engine API's round trip) run faster or slower than their average by up
to 15 % for tens of seconds at a time, on docksim's daemon and on dockerd alike
(README, "Where the model is still wrong").  A profile made a minute before a
measurement cannot know which stretch the measurement will fall in, and a
scenario of cached runs is nearly all container operations.

`ContainerSampler` is handed to `measure` as its `between` hook: before each of
the scenario's replications it plays calibration's own cached-runs workload
(harness/calibrate.py; never the scenario) on the same engine, so that both see
the same stretches: one replication (a fresh daemon, six runs one after
another and six at once) each time, or more for a scenario of few
replications, so that every scenario gets at least MIN_SAMPLES.
`costs(profile)` is then the profile with its container costs and its
container parallelism read off those samples, by the arithmetic calibration
uses; every other cost stays the profile's.
"""
from __future__ import annotations

import math

from harness.calibrate import container_costs, runs_scenario
from harness.calibrate_sharing import fit_parallelism
from harness.measure import measure
from model.costs import Costs
from vocab.scenario import Scenario
from vocab.trace import PhaseRow

# With fewer, dockerd's API call (a difference of medians) came out anywhere
# between 0 and 10 ms for a scenario of two replications.
MIN_SAMPLES = 6


def starts_containers(scenario: Scenario) -> bool:
    """True when some request of the scenario starts a container (`run`), the
    requests whose time container costs make up."""
    return any(step.command == "run" for step in scenario.steps)


class ContainerSampler:
    """Samples of calibration's cached runs, taken between a measurement's replications."""

    def __init__(self, engine: str, replications: int, progress=lambda message: None):
        """For a measurement of `replications` replications on `engine`."""
        self.engine = engine
        self.per_replication = math.ceil(MIN_SAMPLES / max(1, replications))
        self.workload = runs_scenario(replications=self.per_replication)
        self.progress = progress
        self.rows: list[PhaseRow] = []
        self.samples = 0

    def __call__(self, replication: int) -> None:
        self.progress(f"sampling container costs before replication {replication + 1}")
        # container_costs pools the warm runs of every sample: replications need
        # not be told apart
        self.rows += measure(self.workload, engine=self.engine)
        self.samples += self.per_replication

    def costs(self, profile: Costs) -> Costs:
        """`profile` with its container costs as these samples show them (the
        profile unchanged when nothing was sampled)."""
        if not self.rows:
            return profile
        costs = profile.with_(**container_costs(self.rows, self.engine))
        return costs.with_(container_parallelism=fit_parallelism(self.rows, costs))
