#!/usr/bin/env bash
# velora-init sweep on the bytegpt activations: ckptkit vs the numpy peer (bench/velora/numpy_sweep.py),
# same inputs, same points (24 modules x M = 1, 2, 4, ..., D x 2 inits); RUNS runs each, medians.
# usage: bench/velora/run_bench.sh [CKPTKIT_BIN] [ACTS] [RUNS]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BIN="${1:-$HERE/../../build/ckptkit}"
ACTS="${2:-$HERE/../../../shared/data/bytegpt-activations/activations.safetensors}"
RUNS="${3:-3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

ck=() np=()
for i in $(seq "$RUNS"); do
  s=$(date +%s.%N)
  "$BIN" velora-init "$ACTS" -o "$WORK/out$i" --groups 32 --sweep --quiet
  ck+=("$(echo "$(date +%s.%N) - $s" | bc)")
  s=$(date +%s.%N)
  /usr/bin/python3 "$HERE/numpy_sweep.py" "$ACTS" --report "$WORK/out$i/report.json" > "$WORK/np$i.txt"
  np+=("$(echo "$(date +%s.%N) - $s" | bc)")
done
cat "$WORK/np1.txt"
ckm=$(printf '%s\n' "${ck[@]}" | median)
npm=$(printf '%s\n' "${np[@]}" | median)
echo "ckptkit velora-init --sweep: runs ${ck[*]} s, median $ckm s"
echo "numpy peer:                  runs ${np[*]} s, median $npm s"
echo "speed-up (numpy / ckptkit):  $(echo "scale=2; $npm / $ckm" | bc)x"
cp "$WORK/out1/sweep.md" "${SWEEP_MD_OUT:-/dev/null}" 2>/dev/null || true
