#!/usr/bin/env bash
# Streaming benchmark (docs/bench-foundation.md): generates a Llama-2-7B-shaped bf16 checkpoint of
# at least 8 GB, then times, against `cp -r` of the same files:
#   1. ckptkit convert IN -o OUT --memory-budget 1G                        (passthrough stream)
#   2. ckptkit convert IN -o OUT --memory-budget 1G --max-shard-size 2GB   (reshard)
# Each command runs once as a warm-up, then 3 timed runs; medians of wall time and peak RSS come
# from /usr/bin/time -v. The page cache cannot be dropped without root, so every command sees the
# input warm (after the warm-up) and `sync` runs, untimed, before each run so no run pays for the
# previous one's dirty pages. Large files are removed at the end (disk is shared).
#
# usage: bench/stream/run.sh [BUILD_DIR]   env: LAYERS (default 20 = 8.6 GB), BENCH_DIR, RUNS, KEEP=1
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
ckptkit=$build/ckptkit
gen=$build/bench/ckptkit-gen-synthetic
layers=${LAYERS:-20}
runs=${RUNS:-3}
work=${BENCH_DIR:-/tmp/ckptkit-bench-stream}
timebin=/usr/bin/time
for b in "$ckptkit" "$gen" "$timebin"; do
  [ -x "$b" ] || { echo "missing $b (build: make -C $build ckptkit ckptkit-gen-synthetic; apt-get install time)" >&2; exit 2; }
done

cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT
rm -rf "$work"
mkdir -p "$work"
in=$work/llama-syn

echo "== generating $layers layers (bf16, Llama-2-7B shapes) into $in"
gen_start=$(date +%s.%N)
"$timebin" -v -o "$work/gen.time" "$gen" --layers "$layers" --out "$in" --dtype bf16 --seed 1
gen_end=$(date +%s.%N)
bytes=$(du -sb "$in" | cut -f1)
echo "input: $bytes bytes in $(ls "$in" | wc -l) files; generated in $(echo "$gen_end - $gen_start" | bc) s, peak RSS $(grep 'Maximum resident' "$work/gen.time" | awk '{print $NF}') KB"
if [ "$bytes" -lt 8000000000 ]; then echo "input smaller than 8 GB; raise LAYERS" >&2; exit 1; fi

# run_one NAME CMD...: prints "seconds rss_kb" for one run of CMD (output in $work/out).
run_one() {
  rm -rf "$work/out"
  sync
  "$timebin" -v -o "$work/t.time" "$@" >/dev/null
  local wall rss
  wall=$(grep 'Elapsed (wall clock)' "$work/t.time" | awk '{print $NF}' |
    awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
  rss=$(grep 'Maximum resident' "$work/t.time" | awk '{print $NF}')
  echo "$wall $rss"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A med_wall med_rss
bench() {
  local name=$1
  shift
  echo "== $name: $*"
  run_one "$@" >/dev/null  # warm-up
  local walls="" rsss=""
  for i in $(seq "$runs"); do
    read -r w r < <(run_one "$@")
    echo "   run $i: ${w}s, peak RSS ${r} KB"
    walls+="$w"$'\n'
    rsss+="$r"$'\n'
  done
  med_wall[$name]=$(printf '%s' "$walls" | median)
  med_rss[$name]=$(printf '%s' "$rsss" | median)
  echo "   median: ${med_wall[$name]}s, peak RSS ${med_rss[$name]} KB"
}

bench cp cp -r "$in" "$work/out"
bench convert "$ckptkit" convert "$in" -o "$work/out" --memory-budget 1G --quiet
bench reshard "$ckptkit" convert "$in" -o "$work/out" --memory-budget 1G --max-shard-size 2GB --quiet

# Byte-identical check of the last reshard against the input (tensor data and metadata).
"$ckptkit" inspect "$work/out" --json >"$work/out.json"
"$ckptkit" inspect "$in" --json >"$work/in.json"
/usr/bin/python3 - "$work/in.json" "$work/out.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
strip = lambda j: [(t["name"], t["dtype"], t["shape"], t["bytes"]) for t in j["tensors"]]
assert strip(a) == strip(b) and a["metadata"] == b["metadata"], "reshard changed the tensor table"
print(f"reshard: {len(b['shards'])} shards, same table of {len(b['tensors'])} tensors and metadata")
PY

echo
echo "| command | median wall (s) | vs cp | median peak RSS (MB) |"
echo "|---|---:|---:|---:|"
for n in cp convert reshard; do
  ratio=$(echo "scale=2; ${med_wall[$n]} / ${med_wall[cp]}" | bc)
  echo "| $n | ${med_wall[$n]} | ${ratio}x | $(( ${med_rss[$n]} / 1024 )) |"
done
echo "input: $bytes bytes, $layers layers; machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM; load $(cut -d' ' -f1-3 /proc/loadavg)"
