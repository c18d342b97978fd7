#!/usr/bin/env bash
# The side-by-side benchmark: builds patctl (build/), then runs
# bench/run.py with Debian's python3 (python3-torch).  Options go to run.py
# (bench/run.sh --help).  Never part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  echo "bench: PyTorch missing for /usr/bin/python3: apt-get install python3-torch" >&2
  exit 1
fi
scripts/build.sh build >/dev/null
exec /usr/bin/python3 bench/run.py "$@"
