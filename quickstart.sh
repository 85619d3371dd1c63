#!/usr/bin/env bash
# docksim quick start: install what docksim needs (Debian packages when run as
# root, a Python virtual environment with locked versions), then simulate,
# measure and compare the default scenario, scenarios/hello.toml.
#   bash quickstart.sh              set up, then run hello end to end
#   bash quickstart.sh --setup-only set up only
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages: busybox-static gives the images a userland; skopeo is a real
# registry client the interop tests use.
packages=(busybox-static skopeo)
# The engine's interop tests and bench/engine_speed.py drive real peers: docker.io
# (dockerd and the 20.10 CLI), docker-registry (the CNCF registry, a push target),
# runc and crun (the bare-runtime floor), hyperfine (the timer).
packages+=(docker.io docker-registry runc crun hyperfine)
# umoci builds the OCI image the interop tests run on docksim's daemon and under runc.
packages+=(umoci)
# Kernel networks (harness/netns.py): ip and tc from iproute2; ethtool turns the
# veths' offloads off so that frames are wire-sized.
packages+=(iproute2 ethtool)
python3 -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "docksim: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "docksim: please install ${missing[*]} (as root: apt-get install ${missing[*]})" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock

if [ "${1:-}" != "--setup-only" ]; then
  .venv/bin/python simulate.py compare scenarios/hello.toml --out out/hello
fi
