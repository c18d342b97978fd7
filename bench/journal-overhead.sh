#!/usr/bin/env bash
# What journaling every device query costs: the quickstart (PAT) with
# journal = all against journal = off, alternated, N rounds (default 2).
#   bench/journal-overhead.sh [BUILD_DIR] [ROUNDS]
# Prints training seconds of each run and the ratio all/off, and the size of
# the run store.  Machine load moves both alike; compare the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rounds=${2:-2}
patctl=$build/patctl
mkdir -p bench-runs
sum_all=0; sum_off=0
for r in $(seq 1 "$rounds"); do
  for j in off all; do
    out=bench-runs/journal-$j-$r
    rm -rf "$out"
    "$patctl" train --journal "$j" --progress off --quiet --out "$out" > /dev/null
    s=$(sqlite3 "$out/run.sqlite" "SELECT printf('%.2f', MAX(train_seconds)) FROM checkpoint")
    mb=$(du -m "$out/run.sqlite" | cut -f1)
    q=$(sqlite3 "$out/run.sqlite" "SELECT COUNT(*) FROM query")
    st=$(sqlite3 "$out/run.sqlite" "SELECT printf('%.2f', store_seconds) FROM session")
    echo "round $r journal=$j: train ${s} s, of which writing the run store ${st} s; $q journal rows, run.sqlite ${mb} MB"
    if [ "$j" = all ]; then sum_all=$(awk "BEGIN{print $sum_all + $s}"); else sum_off=$(awk "BEGIN{print $sum_off + $s}"); fi
  done
  rm -rf bench-runs/journal-all-"$r" bench-runs/journal-off-"$r"
done
echo "train time with journal=all / journal=off: $(awk "BEGIN{printf \"%.3f\", $sum_all / $sum_off}")"
