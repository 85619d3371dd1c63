#!/usr/bin/env bash
# Regenerates the README's pictures with docksim's own commands (needs root to measure).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python simulate.py compare scenarios/hello.toml --out out/hello
cp out/hello/comparison.png docs/images/hello-comparison.png
cp out/hello/sim/timeline.png docs/images/hello-timeline.png
