#!/usr/bin/env bash
# Renders an analyze-spectrum report.html to a PNG with headless Debian chromium (no network).
# Usage: bench/spectrum/render.sh OUT/report.html out.png [WIDTHxHEIGHT]
# Needs: apt-get install -y chromium
set -euo pipefail
html=$(readlink -f "$1")
png=$(readlink -f "$2" 2>/dev/null || echo "$2")
size=${3:-1400,4000}
size=${size/x/,}
chrome=$(command -v chromium || command -v chromium-browser || true)
if [[ -z "$chrome" ]]; then
  echo "render.sh: chromium not found (apt-get install -y chromium)" >&2
  exit 2
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$chrome" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --screenshot="$png" --window-size="$size" \
  "file://$html" >/dev/null 2>&1
test -s "$png"
echo "rendered $html -> $png ($size)"
