#!/usr/bin/env bash
# Regenerates the README's pictures with docksim's own commands (needs root to measure).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python simulate.py compare scenarios/hello.toml --out out/hello
cp out/hello/comparison.png docs/images/hello-comparison.png
cp out/hello/sim/timeline.png docs/images/hello-timeline.png
.venv/bin/python simulate.py sweep scenarios/fanout-central-vs-p2p.toml --set node.count=5,20,50,100 \
    --set distribution.mode=registry,p2p --calibration builtin --out out/fanout
.venv/bin/python simulate.py chart out/fanout --kind sweep --x node.count --y total_s_median \
    --hue distribution.mode --out out/fanout/chart.png
cp out/fanout/chart.png docs/images/fanout-sweep.png
