#!/usr/bin/env bash
# Build bench_step for earlier states of patctl, to measure what each
# optimisation moved (bench/RESULTS.md, "What moved what").  Prints the
# --patctl NAME=PATH arguments for bench/run.py.
#
#   bench/variants.sh NAME=REV[+team_serial][+flags] ...
#   bench/run.sh $(bench/variants.sh base=37536bd fused=f537ec5+team_serial ...)
#
# REV is any git revision; the variant is built in /tmp/patctl-variants/NAME
# from `git archive REV`, with today's bench/ dropped in when REV predates it.
# +team_serial replaces surrogate/team.c by bench/variants/team_serial.c (no
# thread team: OpenBLAS threads the GEMMs, the rest runs on one thread).
# +flags builds with -fno-math-errno -fvect-cost-model=dynamic.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
top=/tmp/patctl-variants
for spec in "$@"; do
  name=${spec%%=*}
  rest=${spec#*=}
  rev=${rest%%+*}
  mods=""
  [[ $rest == *+* ]] && mods=${rest#*+}
  dir=$top/$name
  rm -rf "$dir" && mkdir -p "$dir/src"
  git -C "$here" archive "$rev" | tar -x -C "$dir/src"
  if [ ! -f "$dir/src/bench/bench_step.c" ]; then
    mkdir -p "$dir/src/bench"
    cp "$here/bench/bench_step.c" "$dir/src/bench/"
    printf 'add_executable(bench_step bench_step.c)\ntarget_link_libraries(bench_step PRIVATE patctl_controller)\n' \
      > "$dir/src/bench/CMakeLists.txt"
    grep -q 'add_subdirectory(bench)' "$dir/src/CMakeLists.txt" ||
      sed -i 's/^add_subdirectory(controller)$/add_subdirectory(controller)\nadd_subdirectory(bench)/' "$dir/src/CMakeLists.txt"
  fi
  flags="-O2 -g"
  for m in ${mods//+/ }; do
    case $m in
      team_serial) cp "$here/bench/variants/team_serial.c" "$dir/src/surrogate/team.c" ;;
      flags) flags="-O2 -g -fno-math-errno -fvect-cost-model=dynamic" ;;
      *) echo "variants.sh: unknown modifier $m" >&2; exit 2 ;;
    esac
  done
  cmake -S "$dir/src" -B "$dir/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_C_FLAGS_RELWITHDEBINFO="$flags" >/dev/null
  cmake --build "$dir/build" -j "$(nproc)" --target bench_step >/dev/null
  printf -- '--patctl %s=%s ' "$name" "$dir/build/bench/bench_step"
done
echo
