#!/usr/bin/env bash
# Larger-than-RAM benchmark (docs/bench-large.md): generates a Llama-2-7B-shaped bf16 checkpoint
# (32 layers, ~13.5 GB, Hugging Face shards of 5 GB, decaying spectra, seed 1) with
# ckptkit-gen-synthetic, then runs with --memory-budget 4G, each once under /usr/bin/time -v:
#   svd-init --rank 16 --svd randomized
#   quantize --scheme nf4
#   analyze-spectrum            (exact spectra: on SPECTRUM_LAYERS layers only, see below)
# and prints wall time, peak RSS and throughput (input GB/s) per command. Outputs are deleted
# right after each measurement; the input at the end (KEEP=1 keeps it). The page cache is not
# dropped (no root needed): every command after the generator reads a warm-ish cache, which on a
# 24 GiB machine holds only part of a 13.5 GB input.
#
# usage: bench/large/run.sh [BUILD_DIR]
#   env: LAYERS (32), BENCH_DIR ($TMPDIR or /tmp, then ckptkit-large-bench), BUDGET (4G), THREADS (all cores),
#        SPECTRUM_LAYERS (regex of layer indices for analyze-spectrum, default "[0-3]"; "all" = every
#        layer: exact SVD of all 224 matrices takes ~1 h on 2 cores), STEPS ("svd quant spectrum"),
#        KEEP=1 (keep the input), GOAL_RSS_KB (4500000: fail when a command's peak RSS is higher)
# The CI-sized version is: LAYERS=2 HIDDEN=256 INTERMEDIATE=688 VOCAB=1000 BUDGET=64M \
#   GOAL_RSS_KB=400000 BENCH_DIR=/tmp/ckptkit-large-small bench/large/run.sh build   (~10 s)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
ckptkit=$build/ckptkit
gen=$build/bench/ckptkit-gen-synthetic
layers=${LAYERS:-32}
work=${BENCH_DIR:-${TMPDIR:-/tmp}/ckptkit-large-bench}
budget=${BUDGET:-4G}
steps=${STEPS:-svd quant spectrum}
spectrum_layers=${SPECTRUM_LAYERS:-[0-3]}
goal_kb=${GOAL_RSS_KB:-4500000}
threads=()
[ -n "${THREADS:-}" ] && threads=(--threads "$THREADS")
shape=()
[ -n "${HIDDEN:-}" ] && shape+=(--hidden "$HIDDEN")
[ -n "${INTERMEDIATE:-}" ] && shape+=(--intermediate "$INTERMEDIATE")
[ -n "${VOCAB:-}" ] && shape+=(--vocab "$VOCAB")
timebin=/usr/bin/time
for b in "$ckptkit" "$gen" "$timebin"; do
  [ -x "$b" ] || { echo "missing $b (make -C $build ckptkit ckptkit-gen-synthetic; apt-get install time)" >&2; exit 2; }
done

in=$work/llama-syn
cleanup() { rm -rf "$work/out"; [ "${KEEP:-0}" = 1 ] || rm -rf "$in"; }
trap cleanup EXIT
mkdir -p "$work"

secs() {  # "h:mm:ss" or "m:ss.xx" -> seconds
  awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }'
}
# measure NAME CMD...: one run under /usr/bin/time -v; prints a result line, checks the RSS goal.
fails=0
measure() {
  local name=$1
  shift
  rm -rf "$work/out"
  sync
  echo "== $name: $*"
  "$timebin" -v -o "$work/$name.time" "$@" >"$work/$name.stdout"
  local wall rss out_bytes
  wall=$(grep 'Elapsed (wall clock)' "$work/$name.time" | awk '{print $NF}' | secs)
  rss=$(grep 'Maximum resident' "$work/$name.time" | awk '{print $NF}')
  out_bytes=$(du -sb "$work/out" 2>/dev/null | cut -f1 || echo 0)
  printf 'RESULT %-16s wall %8.1f s  peak RSS %8.0f MB  in %6.2f GB -> out %6.2f GB  %6.3f GB/s (input)\n' \
    "$name" "$wall" "$(echo "$rss / 1024" | bc -l)" "$(echo "$in_bytes / 1e9" | bc -l)" \
    "$(echo "${out_bytes:-0} / 1e9" | bc -l)" "$(echo "$in_bytes / 1e9 / $wall" | bc -l)"
  grep -E 'User time|System time|Percent of CPU' "$work/$name.time" | sed 's/^\s*/   /'
  if [ "$rss" -gt "$goal_kb" ]; then
    echo "   peak RSS $rss KB is above the goal $goal_kb KB" >&2
    fails=$((fails + 1))
  fi
  rm -rf "$work/out"
}

if [ ! -f "$in/model.safetensors.index.json" ] && [ ! -f "$in/model.safetensors" ]; then
  rm -rf "$in"
  echo "== generating $layers layers (bf16, Llama-2-7B shapes ${shape[*]}) into $in"
  "$timebin" -v -o "$work/gen.time" "$gen" --layers "$layers" --out "$in" --dtype bf16 --seed 1 \
    "${shape[@]}" "${threads[@]}"
  echo "   generated in $(grep 'Elapsed (wall clock)' "$work/gen.time" | awk '{print $NF}'), peak RSS" \
    "$(grep 'Maximum resident' "$work/gen.time" | awk '{print $NF}') KB"
fi
in_bytes=$(du -sbL "$in" | cut -f1)
echo "input: $in_bytes bytes in $(ls "$in" | wc -l) files ($(ls "$in" | tr '\n' ' '))"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, load $(cut -d' ' -f1-3 /proc/loadavg)"

for step in $steps; do
  case $step in
    svd) measure svd-init "$ckptkit" svd-init "$in" -o "$work/out" --rank 16 --svd randomized \
           --memory-budget "$budget" "${threads[@]}" -q ;;
    quant) measure quantize-nf4 "$ckptkit" quantize "$in" -o "$work/out" --scheme nf4 \
             --memory-budget "$budget" "${threads[@]}" -q ;;
    spectrum)
      target=()
      [ "$spectrum_layers" != all ] &&
        target=(--target "model\.layers\.${spectrum_layers}\..*_proj")
      measure analyze-spectrum "$ckptkit" analyze-spectrum "$in" -o "$work/out" \
        --memory-budget "$budget" "${target[@]}" "${threads[@]}" -q ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
[ "$fails" -eq 0 ] || { echo "$fails command(s) above the RSS goal" >&2; exit 1; }
