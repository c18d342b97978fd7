#!/usr/bin/env bash
# The main job: install what is missing, build, train the built-in quickstart
# (PAT on the simulated oscillator device).  Extra arguments go to
# `patctl train`, e.g. scripts/demo.sh --mode ideal --seed 1
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build
exec ./build/patctl train "$@"
