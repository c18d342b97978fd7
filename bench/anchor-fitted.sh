#!/usr/bin/env bash
# The anchor (examples/fmnist-oscillators.ini) trained by PAT with FITTED
# surrogates: collect data from both simulated devices (the same hidden
# truth as the training run: same config and seed), fit each device's
# coupling correction by iterated least squares, then train with
#   osc100:  the fitted surrogate
#   osc1610: the fitted surrogate inside an online surrogate with denoise=8
#            (the backward follows the device's trajectory as inferred from
#            its measurement, not the noiseless one)
#   bench/anchor-fitted.sh [BUILD_DIR] [extra patctl train options...]
#   e.g. bench/anchor-fitted.sh build --train-limit 47700   # equal osc1610 samples
# Data and fits go to bench-runs/anchor-data/, the run to bench-runs/anchor-pat-fitted/.
# Steps already done (data or fit present) are skipped when started again.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
patctl=$build/patctl
[ -x "$patctl" ] || { echo "no $patctl (scripts/build.sh $build)" >&2; exit 1; }
cfg=examples/fmnist-oscillators.ini
data=bench-runs/anchor-data
mkdir -p "$data"
if [ ! -f "$data/osc100/meta.json" ]; then
  "$patctl" collect --config "$cfg" --device osc100 --settings 300 --per-setting 40 --x-range 0:1 \
    --out "$data/osc100" --quiet
fi
if [ ! -f "$data/osc1610/meta.json" ]; then
  "$patctl" collect --config "$cfg" --device osc1610 --settings 60 --per-setting 200 --x-range -0.5:1.5 \
    --repeat-settings 5 --repeat-inputs 10 --repeats 6 --out "$data/osc1610" --quiet
fi
for dev in osc100 osc1610; do
  if [ ! -f "$data/$dev/fit/greybox.json" ]; then
    "$patctl" fit "$data/$dev" --models nominal,greybox --coupling-method ls --fix-consts --rounds 1
  fi
done
out=bench-runs/anchor-pat-fitted
if [ -f "$out/run.sqlite" ]; then
  "$patctl" train --resume "$out" --progress lines
else
  "$patctl" train --config "$cfg" --mode pat --seed 0 --progress lines --out "$out" \
    --surrogate osc100=fitted:"$data/osc100/fit/greybox.json" \
    --surrogate osc1610=online,every=0,coupling=0,denoise=8,model_err=0.03:fitted:"$data/osc1610/fit/greybox.json" \
    "$@"
fi
sqlite3 -separator ' ' "$out/run.sqlite" \
  "SELECT 'epoch', epoch, 'test accuracy', printf('%.2f %%', 100*test_accuracy), printf('%.0f s', seconds) FROM epoch"
