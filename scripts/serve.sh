#!/usr/bin/env bash
# Installs everything, fetches and converts the model, builds the web app in release mode and
# serves it on http://127.0.0.1:8080. Idempotent: a second run skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-tools.sh
scripts/fetch-model.sh
# manifest.json (each file's SHA-256, the page's cache key) came later: converted again without it.
if [ ! -s models/flan-t5-small/manifest.json ]; then
  cargo run --release --bin metaprompt -- convert
fi
scripts/fetch-data.sh
# The page's presets: k-shot samples of the target tasks (copied into the build by Trunk).
cargo run --release --bin metaprompt -- data presets --out presets
echo "[serve] building the page (release; the first build takes ~10 min on 2 cores)"
trunk build --release
# The built files with the page's headers (same-origin policy, cross-origin isolation, gzip):
# scripts/serve-dist.mjs, the server the end-to-end tests use too.
exec node scripts/serve-dist.mjs --dir dist --address 127.0.0.1 --port "${PORT:-8080}"
