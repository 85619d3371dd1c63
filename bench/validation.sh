#!/usr/bin/env bash
# The model's accuracy targets, measured: every scenario in scenarios/validation/
# on both engines (docksim's and the real dockerd), first on the registry's
# emulated link, then on kernel networks (namespaces, tbf, delay line, real TCP).
#   sudo bash bench/validation.sh        (about 22 minutes; needs root)
# Each run prints its tables and writes CSVs to out/validation-<network>/;
# the exit status is 1 when any target is missed on either network.
set -u
cd "$(dirname "$0")/.."
status=0
for network in emulated kernel; do
  echo "== validate on the ${network} network"
  # calibrated just before: this VM's syscalls run up to 2x slower in some minutes
  # than in others, which a profile made earlier cannot know
  .venv/bin/python simulate.py validate --engine both --network "$network" \
    --calibration fresh --out "out/validation-$network" || status=1
done
exit "$status"
