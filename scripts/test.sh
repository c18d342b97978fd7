#!/usr/bin/env bash
# The whole test suite: install what is missing, build twice (normal and
# ASan+UBSan with -fno-sanitize-recover=all), run ctest in both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
scripts/build.sh build
scripts/build.sh build-asan -DPATCTL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
jobs=$(nproc)
echo "== ctest (release build)"
ctest --test-dir build --output-on-failure -j "$jobs"
echo "== ctest (ASan + UBSan build)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs"
