#!/usr/bin/env bash
# Training micro-batches (--microbatches K) against K = 1: the quickstart
# (PAT) with both devices behind `patctl serve` on tcp loopback, each query
# (and each part of one) delayed by latency_ms (default 20) plus
# latency_row_ms per row (default 0), row_exact=1 so every K gives the same
# result.  One epoch over TRAIN images (default 3200 = 100 steps), K = KS
# alternated over ROUNDS rounds.
#   bench/microbatch.sh [BUILD_DIR] [ROUNDS] [LATENCY_MS] [TRAIN] [KS] [LATENCY_ROW_MS]
# Prints seconds per epoch of each run, the ratio to K = 1 of the same round,
# and the test accuracy (identical for every K).  Stops the servers it
# started on every exit path.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rounds=${2:-2}
lat=${3:-20}
train=${4:-3200}
ks=${5:-"1 2 4"}
latrow=${6:-0}
patctl=$build/patctl
p0=$((20000 + ($$ % 20000)))
p1=$((p0 + 1))
pids=()
dir=$(mktemp -d)
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
"$patctl" serve --device oscillators n=64 eta=0.1 j_noise=0.2 sigma=0.02 row_exact=1 latency_ms="$lat" latency_row_ms="$latrow" \
  --zmq tcp://127.0.0.1:$p0 2>/dev/null & pids+=($!)
"$patctl" serve --device oscillators n=266 eta=0.1 j_noise=0.2 sigma=0.02 row_exact=1 latency_ms="$lat" latency_row_ms="$latrow" \
  --zmq tcp://127.0.0.1:$p1 2>/dev/null & pids+=($!)
sed -e "s|tcp://127.0.0.1:5601|tcp://127.0.0.1:$p0|" -e "s|tcp://127.0.0.1:5602|tcp://127.0.0.1:$p1|" \
  examples/quickstart-remote.ini > "$dir/q.ini"
sleep 0.5
echo "quickstart PAT behind 2 x patctl serve (tcp loopback, latency_ms=$lat, latency_row_ms=$latrow, row_exact=1), 1 epoch of $train images, batch 32"
for r in $(seq 1 "$rounds"); do
  ref=""
  for k in $ks; do
    out=$dir/run-$k-$r
    "$patctl" train --config "$dir/q.ini" --epochs 1 --train-limit "$train" --test-limit 1000 \
      --microbatches "$k" --progress off --quiet --out "$out" > /dev/null
    s=$(sqlite3 "$out/run.sqlite" "SELECT printf('%.2f', seconds) FROM epoch WHERE epoch = 1")
    acc=$(sqlite3 "$out/run.sqlite" "SELECT printf('%.2f', 100 * accuracy) FROM evaluation ORDER BY id DESC LIMIT 1")
    [ -z "$ref" ] && ref=$s
    echo "round $r K=$k: $s s per epoch ($(awk "BEGIN{printf \"%.2f\", $s / $ref}") x K=1), test accuracy $acc %"
  done
done
