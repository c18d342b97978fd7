#!/usr/bin/env bash
# The simulated LIF chip (devices/spiking) on Fashion-MNIST, rate and latency
# coding, over seeds: pat (surrogate-gradient BPTT), pat with the ST-RSBP
# spike-train level gradient (--surrogate chip=strsbp), insilico, ideal
# (surrogate-gradient backprop through the chip's own truth), bpstdp
# (BP-STDP, no surrogate) and dfa.  SEEDS="0 1 2", OUT=runs/spiking.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-0 1 2}
OUT=${OUT:-runs/spiking}
P=build/patctl
[ -x "$P" ] || scripts/build.sh build
mkdir -p "$OUT"
. bench/lib.sh
C=examples/spiking-fmnist.ini
LAT="$OUT/spiking-latency.ini"
sed -e 's/^coding = rate/coding = latency/' -e 's/^syn_gain = 0.25/syn_gain = 1.0/' "$C" > "$LAT"

for coding in rate latency; do
    cfg=$C
    [ $coding = latency ] && cfg=$LAT
    train $coding-pat --config "$cfg"
    train $coding-strsbp --config "$cfg" --surrogate chip=strsbp
    train $coding-insilico --config "$cfg" --mode insilico
    train $coding-ideal --config "$cfg" --mode ideal
    train $coding-bpstdp --config "$cfg" --mode bpstdp
    train $coding-dfa --config "$cfg" --mode dfa
    printf '\n%s coding: test accuracy on the chip (%%), seeds %s\n\n| mode | accuracy | mean | training queries |\n|---|---|---:|---:|\n' $coding "$SEEDS"
    row "pat (surrogate-gradient BPTT)" $coding-pat
    row "pat, ST-RSBP gradient" $coding-strsbp
    row insilico $coding-insilico
    row "ideal (BPTT through the truth)" $coding-ideal
    row "bpstdp (no surrogate)" $coding-bpstdp
    row "dfa (no surrogate)" $coding-dfa
done
