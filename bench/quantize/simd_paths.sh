#!/usr/bin/env bash
# The quantizer in memory on every SIMD path this CPU runs (docs/bench-quantize.md): three
# interleaved rounds of build/bench/ckptkit-quant-throughput per path and thread count, with an
# optional second binary (e.g. an older build) run in the same rounds for comparison.
# Usage: bench/quantize/simd_paths.sh [BUILD_DIR] [OTHER_THROUGHPUT_BINARY]
set -euo pipefail
build=${1:-build}
other=${2:-}
bin="$build/bench/ckptkit-quant-throughput"
paths=$("$build/ckptkit" --version | sed -n 's/.*available: \(.*\))/\1/p' | tr -d ',')
row() {  # label, then the command
  local label=$1
  shift
  "$@" | /usr/bin/python3 -c '
import json, sys
j = json.load(sys.stdin)
print("%-12s %6.3f GB/s  memcpy %5.2f  %5.1f%%" % (sys.argv[1], j["quantize_gbps"], j["memcpy_gbps"],
                                                  j["percent_of_memcpy"]))' "$label"
}
for round in 1 2 3; do
  for t in 1 2; do
    [ -n "$other" ] && row "other t$t" "$other" --mb 256 --threads "$t" --runs 7
    for p in $paths; do
      row "$p t$t" env CKPTKIT_SIMD="$p" "$bin" --mb 256 --threads "$t" --runs 7
    done
  done
done
