#!/usr/bin/env bash
# Runs every test: formatting and lints, native tests (wgpu on lavapipe), wasm tests in headless
# Chromium with WebGPU, and the end-to-end page tests. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
step() { printf '\n=== %s (%s)\n' "$*" "$(date +%T)"; }
t0=$(date +%s)

step "tools"
scripts/install-tools.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy (native and wasm32)"
cargo clippy --all-targets -- -D warnings
cargo clippy --target wasm32-unknown-unknown --lib --bins --tests -- -D warnings

step "native tests (wgpu on $(ls /usr/share/vulkan/icd.d/ | grep -q lvp && echo lavapipe || echo the system adapter))"
cargo test --all-targets

step "wasm tests in headless Chromium (WebGPU)"
# wasm-bindgen-test-runner reads ./webdriver.json: --enable-unsafe-webgpu, --no-sandbox (root).
CHROMEDRIVER=/usr/bin/chromedriver \
WASM_BINDGEN_TEST_TIMEOUT=600 \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test --target wasm32-unknown-unknown --test wasm

step "trunk build (dev profile) and end-to-end tests"
trunk build
(cd tests/e2e && node --test --test-reporter=spec)

echo
echo "all tests passed in $(( $(date +%s) - t0 )) s"
