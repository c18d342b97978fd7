# Shared by the bench/*.sh run tables (sourced): train NAME ARGS... runs
# patctl train once per seed of $SEEDS into $OUT/NAME-s<seed> (a finished
# run is kept, a failed one reported and left out); row LABEL NAME prints
# "| LABEL | a / b / c | mean | training queries |" from their summary.json
# (test_nrmse for regression tasks, test_accuracy in % otherwise).
# Needs P (the patctl binary), OUT and SEEDS.
train() {
    local name=$1
    shift
    for s in $SEEDS; do
        local dir="$OUT/$name-s$s"
        if [ -f "$dir/summary.json" ] && grep -q '"status":[[:space:]]*"success"' "$dir/summary.json"; then
            continue
        fi
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
v, q, key = [], None, None
for s in seeds:
    try:
        j = json.load(open(f"{out}/{name}-s{s}/summary.json"))
        key = "test_nrmse" if "test_nrmse" in j else "test_accuracy"
        v.append(j[key] * (1 if key == "test_nrmse" else 100))
        q = j["device_queries_training"]
    except Exception:
        v.append(float("nan"))
fmt = "{:.4f}" if key == "test_nrmse" else "{:.2f}"
print(f"| {label} | {' / '.join(fmt.format(a) for a in v)} | {fmt.format(sum(v) / len(v))} | {q} |")
PYEOF
}
