#!/usr/bin/env bash
# The quickstart with its two devices behind `patctl serve`, over tcp
# loopback (examples/quickstart-remote.ini) or over two pseudo-terminal
# serial pairs made by socat (examples/quickstart-serial.ini), next to the
# in-process run; prints both accuracies and wall times.
#
#   scripts/quickstart-remote.sh [tcp|serial]        (default tcp)
#
# Needs build/patctl (scripts/build.sh) and, for serial, socat and
# build/libpatctl_ptyshim.so (ptys need it: DESIGN.md).  Everything it starts
# (servers, socat) is stopped on every exit path; run dirs go to a temp dir
# (kept when PATCTL_KEEP=1).  PATCTL_EXTRA="--epochs 1 --train-limit 2000"
# passes options to both `patctl train` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-tcp}
bin=${PATCTL:-build/patctl}
shim=$PWD/build/libpatctl_ptyshim.so
dev_opts=(eta=0.1 j_noise=0.2 sigma=0.02)
extra=(${PATCTL_EXTRA:-})
[ -x "$bin" ] || { echo "$0: $bin missing (scripts/build.sh)" >&2; exit 2; }
case $mode in tcp|serial) ;; *) echo "usage: $0 [tcp|serial]" >&2; exit 2 ;; esac

tmp=$(mktemp -d /tmp/patctl-qs.XXXXXX)
pids=()
cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -f /tmp/patctl-qs-ttyS0 /tmp/patctl-qs-ttyS1 /tmp/patctl-qs-ttyC0 /tmp/patctl-qs-ttyC1
    [ "${PATCTL_KEEP:-0}" = 1 ] && echo "run dirs kept in $tmp" || rm -rf "$tmp"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait until log file $1 says "ready on" (the server is listening)
wait_ready() {
    for _ in $(seq 1 100); do
        grep -q "ready on" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$0: server did not start:" >&2; cat "$1" >&2; return 1
}

accuracy() { sed -n 's/.*"test_accuracy":[[:space:]]*\([0-9.eE+-]*\).*/\1/p' "$1/summary.json"; }

t0=$(date +%s.%N)
"$bin" train --config examples/quickstart.ini --out "$tmp/local" --progress off "${extra[@]}" >"$tmp/local.log"
t1=$(date +%s.%N)

ns=(64 266)
if [ "$mode" = tcp ]; then
    cfg=examples/quickstart-remote.ini
    for i in 0 1; do
        "$bin" serve --device oscillators n=${ns[$i]} "${dev_opts[@]}" --zmq tcp://127.0.0.1:560$((i + 1)) \
            >"$tmp/serve$i.log" 2>&1 &
        pids+=($!)
    done
else
    cfg=examples/quickstart-serial.ini
    command -v socat >/dev/null || { echo "$0: socat missing (apt-get install socat)" >&2; exit 2; }
    [ -f "$shim" ] || { echo "$0: $shim missing (scripts/build.sh)" >&2; exit 2; }
    for i in 0 1; do
        socat pty,raw,echo=0,link=/tmp/patctl-qs-ttyS$i pty,raw,echo=0,link=/tmp/patctl-qs-ttyC$i \
            2>"$tmp/socat$i.log" &
        pids+=($!)
    done
    for _ in $(seq 1 50); do [ -e /tmp/patctl-qs-ttyS1 ] && [ -e /tmp/patctl-qs-ttyC1 ] && break; sleep 0.1; done
    for i in 0 1; do
        LD_PRELOAD=$shim "$bin" serve --device oscillators n=${ns[$i]} "${dev_opts[@]}" \
            --serial /dev/../../../tmp/patctl-qs-ttyS$i >"$tmp/serve$i.log" 2>&1 &
        pids+=($!)
    done
fi
for i in 0 1; do wait_ready "$tmp/serve$i.log"; done

t2=$(date +%s.%N)
if [ "$mode" = serial ]; then
    LD_PRELOAD=$shim "$bin" train --config $cfg --out "$tmp/remote" --progress off "${extra[@]}" >"$tmp/remote.log"
else
    "$bin" train --config $cfg --out "$tmp/remote" --progress off "${extra[@]}" >"$tmp/remote.log"
fi
t3=$(date +%s.%N)

a_local=$(accuracy "$tmp/local")
a_remote=$(accuracy "$tmp/remote")
printf 'in-process:   test accuracy %s, wall %.1f s\n' "$a_local" "$(echo "$t1 - $t0" | bc)"
printf '%-13s test accuracy %s, wall %.1f s\n' "$mode:" "$a_remote" "$(echo "$t3 - $t2" | bc)"
if [ "$a_local" = "$a_remote" ]; then
    echo "identical"
else
    echo "DIFFERENT"; exit 1
fi
