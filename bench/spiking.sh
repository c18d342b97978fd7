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
C=examples/spiking-fmnist.ini
LAT="$OUT/spiking-latency.ini"
sed -e 's/^coding = rate/coding = latency/' -e 's/^syn_gain = 0.25/syn_gain = 1.0/' "$C" > "$LAT"

train() {
    local name=$1
    shift
    for s in $SEEDS; do
        local dir="$OUT/$name-s$s"
        if [ -f "$dir/summary.json" ] && grep -q '"status": *"success"' "$dir/summary.json"; then continue; fi
        rm -rf "$dir"
        "$P" train "$@" --seed "$s" --out "$dir" --progress off --quiet >/dev/null 2>"$dir.err" ||
            { echo "FAILED: $name seed $s: $(tail -1 "$dir.err")" >&2; continue; }
        rm -f "$dir.err"
    done
}
row() {
    /usr/bin/python3 - "$1" "$OUT" "$2" $SEEDS <<'PYEOF'
import json, sys
label, out, name, seeds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
v = []
for s in seeds:
    try:
        v.append(100 * json.load(open(f"{out}/{name}-s{s}/summary.json"))["test_accuracy"])
    except Exception:
        v.append(float("nan"))
print(f"| {label} | {' / '.join(f'{a:.2f}' for a in v)} | {sum(v) / len(v):.2f} |")
PYEOF
}
for coding in rate latency; do
    cfg=$C
    [ $coding = latency ] && cfg=$LAT
    train $coding-pat --config "$cfg"
    train $coding-strsbp --config "$cfg" --surrogate chip=strsbp
    train $coding-insilico --config "$cfg" --mode insilico
    train $coding-ideal --config "$cfg" --mode ideal
    train $coding-bpstdp --config "$cfg" --mode bpstdp
    train $coding-dfa --config "$cfg" --mode dfa
    printf '\n%s coding: test accuracy on the chip (%%), seeds %s\n\n| mode | accuracy | mean |\n|---|---|---:|\n' $coding "$SEEDS"
    row "pat (surrogate-gradient BPTT)" $coding-pat
    row "pat, ST-RSBP gradient" $coding-strsbp
    row insilico $coding-insilico
    row "ideal (BPTT through the truth)" $coding-ideal
    row "bpstdp (no surrogate)" $coding-bpstdp
    row "dfa (no surrogate)" $coding-dfa
done
