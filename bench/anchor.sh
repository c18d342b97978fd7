#!/usr/bin/env bash
# The anchor architecture (examples/fmnist-oscillators.ini: 28x28 Fashion-
# MNIST, 16 patches of 7x7 padded to 100 through one shared 100-oscillator
# device, 1600 + 10 class oscillators through a 1610-oscillator device) in
# pat, insilico and ideal mode, seed 0, 1 epoch x 60000 images by default,
# tested on 10000 images on the device after every epoch.
#   bench/anchor.sh [BUILD_DIR] [MODES] [extra patctl train options...]
#   e.g. bench/anchor.sh build "pat ideal" --epochs 2
# Runs go to bench-runs/anchor-<mode>/; an interrupted run is resumed
# (patctl train --resume) when the script is started again.
# References (an independent PyTorch run, 1 epoch x 60000, seed 0, device
# accuracy): PAT 79.8 %, in-silico 71.3 %, ideal 84.8 %.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
modes=${2:-"pat insilico ideal"}
shift 2 || shift $# || true
patctl=$build/patctl
[ -x "$patctl" ] || { echo "no $patctl (scripts/build.sh $build)" >&2; exit 1; }
mkdir -p bench-runs
echo "anchor: $(nproc) cores, $("$patctl" version | tr '\n' ' ')"
for mode in $modes; do
  out=bench-runs/anchor-$mode
  if [ -f "$out/run.sqlite" ] && [ "$(sqlite3 "$out/run.sqlite" "SELECT status FROM session ORDER BY id DESC LIMIT 1")" != success ]; then
    "$patctl" train --resume "$out" --progress lines
  elif [ ! -f "$out/run.sqlite" ]; then
    "$patctl" train --config examples/fmnist-oscillators.ini --mode "$mode" --seed 0 --progress lines \
      --out "$out" "$@"
  fi
done
echo
echo "anchor results (references after 1 epoch: pat 79.8 %, insilico 71.3 %, ideal 84.8 %)"
printf "%-9s %5s %12s %12s %16s %14s\n" mode epoch "test acc %" "s/epoch" "device share %" "queries"
for mode in $modes; do
  db=bench-runs/anchor-$mode/run.sqlite
  [ -f "$db" ] || continue
  sqlite3 -separator ' ' "$db" \
    "SELECT epoch, printf('%.2f', 100*test_accuracy), printf('%.0f', seconds),
            printf('%.0f', 100*device_seconds/seconds), device_queries FROM epoch ORDER BY epoch" |
  while read -r ep acc s share q; do
    printf "%-9s %5s %12s %12s %16s %14s\n" "$mode" "$ep" "$acc" "$s" "$share" "$q"
  done
done
