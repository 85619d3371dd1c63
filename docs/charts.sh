#!/usr/bin/env bash
# Regenerates docs/images/charts/: one example of every `simulate.py chart` kind,
# drawn with docksim's own commands.  The model's traces need nothing; the measured
# ones (comparison, the measured lines of cdf and breakdown) need root, and the
# Docker one a dockerd.  Without them those charts are drawn from what there is.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
out=out/charts
images=docs/images/charts
mkdir -p "$out" "$images"

for name in hello three-clients shared-base; do
  $py simulate.py run "scenarios/$name.toml" --out "$out/$name" >/dev/null
done

# A small cluster for the topology and the animation: four workers pull one image
# at once through a pull-through mirror.
cat > "$out/cluster.toml" <<'EOF'
[scenario]
name = "cluster-mirror"
description = "Four workers pull one image at once through a pull-through mirror."
seed = 1

[network]
bandwidth_mbps = 100
rtt_ms = 20
registry_bandwidth_mbps = 200

[distribution]
mode = "mirror"
mirror_bandwidth_mbps = 1000

[[node]]
name = "worker"
count = 4

[[image]]
ref = "lecture/web:2"
layers = [
  { name = "os", size_mb = 8.0, compression = 2.0 },
  { name = "runtime", size_mb = 12.0, compression = 1.5 },
  { name = "site", size_mb = 2.0, compression = 1.0 },
]

[[step]]
command = "pull"
image = "lecture/web:2"
node = "worker-*"
EOF
$py simulate.py run "$out/cluster.toml" --out "$out/cluster" >/dev/null

# Measured traces, when this machine can measure.
measured=("$out/hello")
docker_opt=()
if [ "$(id -u)" = 0 ]; then
  $py simulate.py compare scenarios/hello.toml --out "$out/hello-compare" >/dev/null
  measured=("$out/hello-compare")
  if command -v dockerd >/dev/null; then
    $py simulate.py measure scenarios/hello.toml --engine docker --out "$out/hello-docker" >/dev/null
    docker_opt=(--opt "docker=$out/hello-docker")
  fi
else
  echo "not root: the comparison and the measured lines are left out" >&2
fi

chart() {  # chart NAME DIR KIND [options...]: draw, then store a 256-colour copy (< 200 KB)
  local name=$1 dir=$2 kind=$3
  shift 3
  $py simulate.py chart "$dir" --kind "$kind" --out "$out/img/$name.png" "$@" >/dev/null
  $py -c 'import sys; from PIL import Image
Image.open(sys.argv[1]).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(
    sys.argv[2], optimize=True)' "$out/img/$name.png" "$images/$name.png"
}
chart sequence "$out/hello" sequence
chart sequence-shared-pull "$out/three-clients" sequence --opt request=s0-c1-r0
chart gantt "$out/three-clients" gantt
chart topology "$out/hello" topology
chart topology-cluster "$out/cluster" topology
chart cdf "${measured[0]}" cdf "${docker_opt[@]}" --opt "with=$out/three-clients"
chart breakdown "${measured[0]}" breakdown
if [ "${measured[0]}" != "$out/hello" ]; then
  chart comparison "${measured[0]}" comparison "${docker_opt[@]}"
fi
$py simulate.py chart "$out/cluster" --kind animation --out "$images/animation.gif" >/dev/null
ls -l "$images"
