#!/usr/bin/env bash
# Fuzz the wire decoders with libFuzzer for a bounded time each.
#   fuzz/run.sh [SECONDS_PER_TARGET=60] [TARGET...]
# Targets: frame (frame decoder, payload parsers, serial link layer), cobs
# (byte stuffing), desc (description JSON).  Builds with clang
# -fsanitize=fuzzer,address,undefined into build-fuzz/, starts from the seed
# corpora in fuzz/corpus/<target>/ (new interesting inputs are added to
# build-fuzz/corpus/<target>/), and copies any crashing input into
# fuzz/regressions/<target>/, which ctest replays on every run (fuzz_replay_*).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(frame cobs desc)
cc=$(command -v clang-14 || command -v clang || true)
if [ -z "$cc" ]; then
    echo "fuzz/run.sh: clang is needed (apt-get install clang)" >&2
    exit 2
fi
out=build-fuzz
mkdir -p "$out"
flags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I include -I . -D_DEFAULT_SOURCE"
common="protocols/frame.c protocols/cobs.c protocols/slink.c protocols/crc32_zlib.c"
status=0
for t in "${targets[@]}"; do
    case $t in
        frame) src="fuzz/fuzz_frame.c $common"; libs="-lz" ;;
        cobs) src="fuzz/fuzz_cobs.c protocols/cobs.c"; libs="" ;;
        desc) src="fuzz/fuzz_desc.c protocols/desc_json.c"; libs="-lcjson" ;;
        *) echo "unknown target $t" >&2; exit 2 ;;
    esac
    # shellcheck disable=SC2086
    "$cc" $flags $src $libs -o "$out/fuzz_$t"
    mkdir -p "$out/corpus/$t" "$out/crash/$t" "fuzz/regressions/$t"
    echo "== fuzz_$t for ${secs}s"
    if ! "$out/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$out/crash/$t/" "$out/corpus/$t" "fuzz/corpus/$t" 2>"$out/fuzz_$t.log"; then
        status=1
        echo "fuzz_$t: crash; input kept in fuzz/regressions/$t/ (log: $out/fuzz_$t.log)"
        tail -30 "$out/fuzz_$t.log"
    fi
    for f in "$out/crash/$t"/*; do
        [ -e "$f" ] && cp "$f" "fuzz/regressions/$t/" && rm -f "$f"
    done
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$out/fuzz_$t.log" | sed "s/^/  /"
    echo "  corpus: $(ls "$out/corpus/$t" | wc -l) inputs"
done
exit $status
