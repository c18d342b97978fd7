#!/usr/bin/env bash
# The learning rules beyond PAT, measured: test accuracy on the device over
# seeds, with the device queries each run made (from the runs' summary.json).
#
#   bench/rules.sh pc     quickstart: pat, pc exact / fixedpred / strict
#   bench/rules.sh dfa    quickstart, SHG and circuit examples: pat, dfa, adfa,
#                         spsa at equal training queries (spsa: 2 queries per
#                         device per step, so half the training images or
#                         epochs)
#   bench/rules.sh bean   quickstart (PAT): without and with BEAN, then
#                         patctl eval --prune over fractions of couplings, and
#                         pruned during training (--prune, --prune-ramp) and
#                         fine-tuned
#   bench/rules.sh all    all three
#
# SEEDS="0 1 2" (default), OUT=runs/rules (default); every run stays in OUT
# (patctl report OUT/... draws any of them; several runs are compared).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
SEEDS=${SEEDS:-0 1 2}
OUT=${OUT:-runs/rules}
P=build/patctl
[ -x "$P" ] || scripts/build.sh build
mkdir -p "$OUT"
. bench/lib.sh
PY=/usr/bin/python3

header() { printf '\n%s\n\n| run | test accuracy, seeds %s (%%) | mean | training queries |\n|---|---|---:|---:|\n' "$1" "${SEEDS// / \/ }"; }

pc() {
    train qs-pat
    train qs-pc-exact --mode pc --pc-variant exact
    train qs-pc-fixedpred --mode pc --pc-variant fixedpred
    train qs-pc-fixedpred-eta1 --mode pc --pc-variant fixedpred --pc-eta 1 --pc-iters 7
    train qs-pc-strict --mode pc --pc-variant strict
    train qs-pc-strict-noiseless --mode pc --pc-variant strict --sigma 0
    train qs-pat-noiseless --sigma 0
    header "Quickstart, predictive coding (pc_eta 0.1, pc_iters 20 unless said)"
    row "pat" qs-pat
    row "pc exact" qs-pc-exact
    row "pc fixedpred" qs-pc-fixedpred
    row "pc fixedpred, eta 1, 7 iterations (= layers)" qs-pc-fixedpred-eta1
    row "pc strict" qs-pc-strict
    row "pat, device input noise off (sigma 0)" qs-pat-noiseless
    row "pc strict, device input noise off (sigma 0)" qs-pc-strict-noiseless
}

dfa() {
    train qs-pat
    train qs-pat-lr0.01 --lr 0.01
    train qs-dfa --mode dfa --lr 0.01
    train qs-adfa --mode adfa --lr 0.01
    train qs-spsa --mode spsa --lr 0.01 --spsa-c 0.1 --epochs 1
    header "Quickstart (2 epochs x 10000 images; spsa 1 epoch)"
    row "pat (lr 1e-3)" qs-pat
    row "pat, lr 0.01" qs-pat-lr0.01
    row "dfa, lr 0.01" qs-dfa
    row "adfa (g = cos), lr 0.01" qs-adfa
    row "spsa, lr 0.01, c 0.1" qs-spsa
    # SHG: the spectrum is even in the phases (phi -> -phi mirrors the pulse in
    # time, same SHG spectrum), so its response to a small phase change is
    # odd: dfa's f' = 1 is wrong, adfa's g = sin fits
    local c=examples/shg-fmnist.ini
    train shg-pat --config $c
    train shg-dfa --config $c --mode dfa
    train shg-adfa-cos --config $c --mode adfa
    train shg-adfa-sin --config $c --mode adfa --dfa-g sin
    train shg-spsa --config $c --mode spsa --lr 0.01 --train-limit 5000
    header "shg-fmnist (5 epochs x 10000 images, lr 0.003; spsa 5 x 5000)"
    row "pat" shg-pat
    row "dfa" shg-dfa
    row "adfa, g = cos" shg-adfa-cos
    row "adfa, g = sin" shg-adfa-sin
    row "spsa, lr 0.01" shg-spsa
    c=examples/circuit-fmnist.ini
    train circ-pat --config $c
    train circ-dfa --config $c --mode dfa
    c=examples/circuit-dfa-fmnist.ini
    train circh-pat --config $c
    train circh-dfa --config $c --mode dfa
    train circh-adfa --config $c --mode adfa
    train circh-spsa --config $c --mode spsa --train-limit 5000
    header "circuit-fmnist (readout scale above the circuits) and circuit-dfa-fmnist (linear 10 head); 5 epochs x 10000 images, lr 0.01; spsa 5 x 5000"
    row "circuit-fmnist: pat" circ-pat
    row "circuit-fmnist: dfa" circ-dfa
    row "circuit-dfa-fmnist: pat" circh-pat
    row "circuit-dfa-fmnist: dfa" circh-dfa
    row "circuit-dfa-fmnist: adfa, g = cos" circh-adfa
    row "circuit-dfa-fmnist: spsa" circh-spsa
}

bean() {
    train qs-pat
    train qs-bean --bean "${BEAN:-0.001}"
    printf '\nQuickstart PAT, pruned after training (patctl eval --prune, digital weights and physical couplings)\n\n'
    printf '| run | seed | 0 | 0.25 | 0.5 | 0.75 | 0.9 |\n|---|---|---:|---:|---:|---:|---:|\n'
    for name in qs-pat qs-bean; do
        for s in $SEEDS; do
            local dir="$OUT/$name-s$s"
            [ -f "$dir/summary.json" ] || continue
            if ! "$PY" -c "import sqlite3,sys; sys.exit(0 if sqlite3.connect('$dir/run.sqlite').execute('select count(*) from evaluation where prunable_entries > 0').fetchone()[0] >= 5 else 1)" 2>/dev/null; then
                "$P" eval "$dir" --prune 0,0.25,0.5,0.75,0.9 --quiet >/dev/null
            fi
            "$PY" - "$dir" "$name" "$s" <<'EOF'
import sqlite3, sys
d, name, s = sys.argv[1:4]
rows = sqlite3.connect(d + "/run.sqlite").execute(
    "select pruned, accuracy from evaluation where prunable_entries > 0 order by id desc limit 5").fetchall()
acc = {round(f, 3): a for f, a in rows}
print(f"| {name} | {s} | " + " | ".join(f"{100 * acc.get(f, float('nan')):.2f}" for f in (0, 0.25, 0.5, 0.75, 0.9)) + " |")
EOF
        done
    done
    # prune during training and fine-tune (patctl train --prune): 2 epochs,
    # prune, 1 more epoch with the pruned entries held at zero; against the
    # unpruned network trained the same 3 epochs
    train qs-pat-e3 --epochs 3
    for f in 0.5 0.75 0.9; do
        train "qs-prune$f-e3" --epochs 3 --prune "$f" --prune-after 2
        train "qs-bean-prune$f-e3" --epochs 3 --prune "$f" --prune-after 2 --bean "${BEAN:-0.001}"
    done
    header "Quickstart PAT, 3 epochs: pruned after epoch 2 (patctl train --prune F --prune-after 2), fine-tuned 1 epoch"
    row "unpruned" qs-pat-e3
    for f in 0.5 0.75 0.9; do
        row "pruned $f, fine-tuned" "qs-prune$f-e3"
        row "BEAN α ${BEAN:-0.001}, pruned $f, fine-tuned" "qs-bean-prune$f-e3"
    done
    # 4 epochs: at once after epoch 3, or ramped up over epoch 3 (--prune-ramp
    # 1, cubic), then 1 epoch fine-tuned at the full fraction
    train qs-pat-e4 --epochs 4
    for f in 0.5 0.75 0.9; do
        train "qs-prune$f-e4" --epochs 4 --prune "$f" --prune-after 3
        train "qs-ramp$f-e4" --epochs 4 --prune "$f" --prune-after 2 --prune-ramp 1
        train "qs-bean-ramp$f-e4" --epochs 4 --prune "$f" --prune-after 2 --prune-ramp 1 --bean "${BEAN:-0.001}"
    done
    header "Quickstart PAT, 4 epochs: pruned at once after epoch 3, or ramped up during epoch 3 (--prune-after 2 --prune-ramp 1); then 1 epoch at the full fraction"
    row "unpruned" qs-pat-e4
    for f in 0.5 0.75 0.9; do
        row "pruned $f at once" "qs-prune$f-e4"
        row "pruned $f, ramped" "qs-ramp$f-e4"
        row "BEAN α ${BEAN:-0.001}, pruned $f, ramped" "qs-bean-ramp$f-e4"
    done
}

case $what in
pc) pc ;;
dfa) dfa ;;
bean) bean ;;
all) pc; dfa; bean ;;
*) echo "usage: bench/rules.sh pc|dfa|bean|all" >&2; exit 2 ;;
esac
