#!/usr/bin/env bash
# Installs every tool the project needs, idempotently: a second run only checks.
# Debian packages: chromium + chromedriver (browser tests), mesa-vulkan-drivers (lavapipe: a Vulkan
# CPU adapter so wgpu tests run without a GPU). Cargo tools: trunk, wasm-bindgen-cli (the exact
# version pinned in Cargo.lock). npm: playwright-core (drives Debian's chromium; never downloads one).
#
# Usage: install-tools.sh [--system | --cargo-tools]   (default: both)
#   --system       apt packages, the wasm32 target, npm packages (about 2 minutes cold)
#   --cargo-tools  wasm-bindgen-cli and trunk, compiled from crates.io (the slow part)
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[install] %s\n' "$*" >&2; }
what=${1:-all}

TRUNK_VERSION=0.21.14
# wasm-bindgen-cli must match the wasm-bindgen library version in Cargo.lock exactly.
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock 2>/dev/null || true)
WASM_BINDGEN_VERSION=${WASM_BINDGEN_VERSION:-0.2.130}

if [ "$what" != --cargo-tools ]; then
need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
[ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || need_apt+=(mesa-vulkan-drivers)
command -v xz >/dev/null || need_apt+=(xz-utils)
command -v unzip >/dev/null || need_apt+=(unzip)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

if [ ! -d tests/e2e/node_modules/playwright-core ]; then
  log "npm ci (playwright-core)"
  (cd tests/e2e && npm ci --no-audit --no-fund --silent)
fi
fi

# The tools are built at opt-level 1 without LTO: they spend their time in I/O and in rustc, so
# they run about as fast, and compile in a fraction of the time on 2 cores.
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=1
if [ "$what" != --system ]; then
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
  # Not --locked: one of its locked dependency versions is missing from the registry.
  log "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes)"
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

if [ "$(trunk --version 2>/dev/null | awk '{print $2}')" != "$TRUNK_VERSION" ]; then
  # trunk 0.22 needs a newer rustc than this machine's 1.95. Without default features: no TLS
  # stack (ring, rustls: 25 of its 489 crates) and no update check. It never downloads here
  # (Trunk.toml: offline, local tools) and serves plain HTTP on loopback.
  log "cargo install trunk $TRUNK_VERSION (10-15 minutes on 2 cores)"
  cargo install trunk --version "$TRUNK_VERSION" --locked --no-default-features --force
fi

fi
log "tools ready ($what)"
