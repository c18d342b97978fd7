#!/usr/bin/env bash
# Configure and build.  scripts/build.sh [DIR] [cmake options...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPATCTL_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)"
