"""Calibration of the manifest's write lock: two pulls of one image at once.

When two pulls of one image reach dockerd together, the second finds the
manifest's ingest reference locked and retries for about half a second, and
the first cannot write its manifest until those retries end
(model/ingest.py).  The wait is drawn at random on every occasion, so one
occasion says little: this workload makes PAIRS of them on each of two fresh
daemons -- two clients pull an image at the same moment, and again for the
next image, each with a manifest of its own (every image has its own small
top layer).

``manifest_lock_wait_s`` is then the wait with which the model, given every
other cost, gives the median resolve (request sent -> first layer status) of
those pulls that was measured: a bisection over the model's own prediction of
the same workload, as harness/calibrate_sharing.py does for parallelism.
docksim's daemon shares one resolve's work among such pulls and waits for
nothing: its fit comes out at 0.
"""
from __future__ import annotations

from harness.calibrate import median_duration, solve_monotone
from harness.measure import measure
from model.costs import Costs
from vocab.scenario import parse_scenario
from vocab.trace import PhaseRow

PAIRS = 8
# Seconds between pairs: the retries take at most 1.02 s (ten back-offs of up
# to 1, 2, ... 512 ms), and the tiny pull that follows well under 0.3 s here.
SPACING_S = 1.4
HIGHEST_S = 5.0  # no wait is longer than this: the fit's upper bound


def _pairs_toml(replications: int) -> str:
    images, steps = [], []
    for pair in range(PAIRS):
        ref = f"calibration/together-{pair}:1"
        images.append(f'\n[[image]]\nref = "{ref}"\nlayers = ['
                      f'{{ name = "base", size_mb = 3.0, compression = 2.0 }}, '
                      f'{{ name = "together-{pair}", size_mb = 0.2, compression = 1.0 }}]\n')
        steps.append(f'\n[[step]]\nat_s = {pair * SPACING_S:g}\ncommand = "pull"\n'
                     f'image = "{ref}"\nclients = 2\n')
    return ('[scenario]\nname = "calibration-together"\n'
            'description = "docksim\'s calibration: two pulls of one image at once."\n'
            f'replications = {replications}\n' + "".join(images) + "".join(steps))


def pairs_scenario(replications: int = 2):
    """The paired pulls, on `replications` fresh daemons."""
    return parse_scenario(_pairs_toml(replications), "<calibration-together>")


def median_resolve_s(rows: list[PhaseRow]) -> float:
    """The median resolve over every pull of the workload."""
    return median_duration(rows, lambda r: r.phase == "resolve")


def fit_manifest_wait(real_rows: list[PhaseRow], costs: Costs) -> float:
    """The manifest_lock_wait_s with which the model's median resolve of the
    paired pulls equals the measured one (0 when the model is already as slow
    without any wait, HIGHEST_S at most)."""
    import model  # harness -> model only for this fit, as calibrate_tcp does
    measured_s = median_resolve_s(real_rows)
    scenario = pairs_scenario(replications=1)  # the model is deterministic

    def modelled_s(wait_s: float) -> float:
        return median_resolve_s(model.simulate(scenario, costs=costs.with_(manifest_lock_wait_s=wait_s)))

    # a longer wait never makes the model faster
    return solve_monotone(modelled_s, measured_s, 0.0, HIGHEST_S)


def calibrate_manifest_wait(costs: Costs, engine: str, progress=lambda message: None) -> Costs:
    """Measure the paired pulls on `engine`; `costs` with manifest_lock_wait_s fitted."""
    rows = measure(pairs_scenario(), progress=progress, engine=engine)
    return costs.with_(manifest_lock_wait_s=fit_manifest_wait(rows, costs))
