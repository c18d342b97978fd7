#!/usr/bin/env bash
# Fit time for 10 000 samples of the 64-oscillator device: every surrogate
# kind, in seconds and in units of one nominal forward pass over the data.
#   bench/fit.sh [N=10000] [n_osc=64] [mlp_epochs=100]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh build >/dev/null
cmake --build build --target bench_fit >/dev/null
exec build/bench/bench_fit "$@"
