#!/usr/bin/env bash
# The delay-based reservoir (devices/reservoir) on its benchmark tasks, one
# reservoir and a deep one (two in series), trained through the devices by
# pat (surrogate VJP), dfa (direct feedback alignment: no surrogate, no
# backward pass through a reservoir) and spsa (perturbations, at equal
# training queries: half the training samples), over seeds:
#   NARMA-10 and Mackey-Glass one-step prediction: test NRMSE on the device
#   sequential Fashion-MNIST (each image row by row): test accuracy
# SEEDS="0 1 2", OUT=runs/reservoir; every run stays in OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-0 1 2}
OUT=${OUT:-runs/reservoir}
P=build/patctl
[ -x "$P" ] || scripts/build.sh build
mkdir -p "$OUT"
. bench/lib.sh
PY=/usr/bin/python3



for task in narma10 mackey-glass; do
    for arch in "" deep-; do
        c=examples/reservoir-$arch$task.ini
        n=$arch$task
        train $n-pat --config $c
        train $n-dfa --config $c --mode dfa
        train $n-spsa --config $c --mode spsa --train-limit 1000
        train $n-insilico --config $c --mode insilico
        printf '\n%s (%s): test NRMSE on the device, seeds %s\n\n| mode | NRMSE | mean | training queries |\n|---|---|---:|---:|\n' \
            "$task" "${arch:-one reservoir}" "$SEEDS"
        row pat $n-pat
        row dfa $n-dfa
        row "spsa (half the samples)" $n-spsa
        row "insilico (surrogate only)" $n-insilico
    done
done
for arch in "" deep-; do
    c=examples/reservoir-${arch}fmnist.ini
    n=${arch}fmnist
    train $n-pat --config $c
    train $n-dfa --config $c --mode dfa
    train $n-spsa --config $c --mode spsa --train-limit 5000
    printf '\nsequential Fashion-MNIST (%s): test accuracy on the device, seeds %s\n\n| mode | accuracy %% | mean | training queries |\n|---|---|---:|---:|\n' \
        "${arch:-one reservoir}" "$SEEDS"
    row pat $n-pat
    row dfa $n-dfa
    row "spsa (half the images)" $n-spsa
done
