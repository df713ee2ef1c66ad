#!/usr/bin/env bash
# setup.sh: install linrec's build dependencies (Debian 12, as root) when they
# are missing, then configure and build. Usage: launch/setup.sh [BUILD_DIR [cmake args...]]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
shift || true
pkgs="build-essential cmake pkg-config libopenmpi-dev openmpi-bin libopenblas-dev libzstd-dev libcjson-dev zlib1g-dev"
missing=""
for p in $pkgs; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq $missing >/dev/null
fi
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build" -j "$(nproc)" ${LINREC_TARGET:+--target "$LINREC_TARGET"}
