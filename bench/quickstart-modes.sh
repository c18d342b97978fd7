#!/usr/bin/env bash
# The quickstart in its four training modes, side by side: test accuracy on
# the device after each epoch and the device queries it took to get there.
#   bench/quickstart-modes.sh [BUILD_DIR] [extra patctl train options...]
# SPSA runs with --lr 0.01 --spsa-c 0.1 (the quickstart's lr 1e-3 barely
# moves it).  Runs go to bench-runs/quickstart-<mode>/ (replaced).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
patctl=$build/patctl
[ -x "$patctl" ] || { echo "no $patctl (scripts/build.sh $build)" >&2; exit 1; }
mkdir -p bench-runs
for mode in pat insilico ideal spsa; do
  out=bench-runs/quickstart-$mode
  rm -rf "$out"
  extra=()
  [ "$mode" = spsa ] && extra=(--lr 0.01 --spsa-c 0.1)
  "$patctl" train --mode "$mode" --eval-every 1 --journal off --progress lines --out "$out" \
    "${extra[@]}" "$@" > "bench-runs/quickstart-$mode.log" 2>&1 || { cat "bench-runs/quickstart-$mode.log"; exit 1; }
done
echo "quickstart (2 epochs x 10000 images, test on 10000 through the device), seed 0:"
printf "%-9s %5s %12s %22s %14s %10s\n" mode epoch "test acc %" "device queries (train)" "all queries" "s/epoch"
for mode in pat insilico ideal spsa; do
  db=bench-runs/quickstart-$mode/run.sqlite
  sqlite3 -separator ' ' "$db" \
    "SELECT e.epoch, printf('%.2f', 100*e.test_accuracy),
            e.device_queries - COALESCE((SELECT SUM(device_queries) FROM evaluation v WHERE v.epoch <= e.epoch), 0),
            e.device_queries, printf('%.1f', e.seconds) FROM epoch e ORDER BY e.epoch" |
  while read -r ep acc q all s; do
    printf "%-9s %5s %12s %22s %14s %10s\n" "$mode" "$ep" "$acc" "$q" "$all" "$s"
  done
done
