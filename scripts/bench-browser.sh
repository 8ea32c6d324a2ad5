#!/usr/bin/env bash
# The page's benchmark against the native one, back to back in one run:
#   bash scripts/bench-browser.sh
# 1. a release build of the page (trunk build --release) into a folder of its own;
# 2. tests/e2e/bench.mjs: module sizes raw and compressed; first and cached load of the real model
#    in headless Chromium; our engines' tuning step at the native benchmark's shape, with WebGPU
#    (SwiftShader here) and without; the page's CPU engine is WebAssembly on one thread;
# 3. `metaprompt bench tune` (our native CPU engine, release) at the same shape.
# Raw output in results/bench/browser.txt. Run it on an idle machine (wall-clock medians).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/metaprompt/target}"
export NODEVICE_SELECT=1
scripts/install-tools.sh
scripts/fetch-model.sh
cargo build --release --bin metaprompt
if [ ! -s models/flan-t5-small/model.safetensors ]; then
  "$CARGO_TARGET_DIR/release/metaprompt" convert
fi
mkdir -p presets
dist="$CARGO_TARGET_DIR/bench-dist"
trunk build --release --dist "$dist"
out=results/bench/browser.txt
mkdir -p results/bench
{
  echo "# bash scripts/bench-browser.sh, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (dirty)')"
  echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) threads; chromium: $(/usr/bin/chromium --version 2>/dev/null | head -1); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  (cd tests/e2e && METAPROMPT_DIST="$dist" node bench.mjs)
  echo
  echo "native (metaprompt bench tune --steps 3):"
  "$CARGO_TARGET_DIR/release/metaprompt" bench tune --steps 3
} 2>&1 | tee "$out"
