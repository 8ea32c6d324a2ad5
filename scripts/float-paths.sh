#!/usr/bin/env bash
# Runs the native tests on floating-point paths other than this CPU's own, so that a test whose
# outcome hangs on the last bit of the arithmetic shows up here and not on the next machine:
#   - the gemm crate picks its kernels by CPUID at run time (AVX-512, AVX2+FMA or scalar), and
#     each rounds differently;
#   - lavapipe's LLVM compiles our WGSL for the host's vector width (8 or 4 lanes);
#   - rayon splits work by thread count.
# Under qemu-user the CPU model decides what CPUID reports, so one machine runs the paths of all:
#   native        this CPU's kernels, RAYON_NUM_THREADS=1 and =2
#   haswell       qemu -cpu Haswell: AVX2+FMA kernels (the other path on an AVX-512 machine)
#   nehalem       qemu -cpu Nehalem: SSE4.2 only, gemm's scalar kernels, 4-lane lavapipe
# qemu cannot emulate AVX-512: that path is only run on a machine that has it (`native`).
#
# Usage: scripts/float-paths.sh [PATH...] [-- TEST-BINARY...]
#   PATH: native1 native2 haswell nehalem (default: all); TEST-BINARY: test targets to run
#   (default: every native test target, `cargo test --all-targets`' list).
# Prints every line a test prints with "margin" in it, per path, and a summary; exits non-zero
# when a test fails on any path. Installs qemu-user (Debian) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/metaprompt/target}"
# Mesa's device-select layer would print a Wayland warning per process (see scripts/test.sh).
export NODEVICE_SELECT=1

paths=() targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; targets=("$@"); break ;;
    native1|native2|haswell|nehalem) paths+=("$1") ;;
    *) echo "unknown path $1 (native1 native2 haswell nehalem)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#paths[@]} -gt 0 ] || paths=(native1 native2 haswell nehalem)

if printf '%s\n' "${paths[@]}" | grep -q 'haswell\|nehalem' && ! command -v qemu-x86_64 >/dev/null; then
  echo "[float-paths] apt: qemu-user" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user >/dev/null
fi

[ -s models/flan-t5-small/model.safetensors ] || { scripts/fetch-model.sh; cargo run -q -- convert; }

# The test executables, as cargo builds them for `cargo test --all-targets`.
mapfile -t exes < <(cargo test --all-targets --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"] + " " + m["executable"])
')
[ ${#exes[@]} -gt 0 ] || { echo "no test executables built" >&2; exit 1; }

failed=()
for path in "${paths[@]}"; do
  case "$path" in
    native1) run=(env RAYON_NUM_THREADS=1) ;;
    native2) run=(env RAYON_NUM_THREADS=2) ;;
    haswell) run=(env RAYON_NUM_THREADS=2 qemu-x86_64 -cpu Haswell) ;;
    nehalem) run=(env RAYON_NUM_THREADS=2 qemu-x86_64 -cpu Nehalem) ;;
  esac
  for entry in "${exes[@]}"; do
    name=${entry%% *} exe=${entry#* }
    if [ ${#targets[@]} -gt 0 ] && ! printf '%s\n' "${targets[@]}" | grep -qx "$name"; then continue; fi
    t0=$(date +%s)
    log=$(mktemp)
    if "${run[@]}" "$exe" --test-threads=1 --nocapture > "$log" 2>&1; then status=ok; else status=FAILED; failed+=("$path/$name"); fi
    printf '[%s] %-14s %-6s %4d s  %s\n' "$path" "$name" "$status" $(( $(date +%s) - t0 )) \
      "$(grep -o 'test result: .*' "$log" | tail -n 1)"
    grep -i 'margin' "$log" | sed "s/^/[$path]   /" || true
    [ "$status" = ok ] || grep -B2 -A12 'panicked' "$log" | sed "s/^/[$path]   /" | head -n 40
    rm -f "$log"
  done
done
echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}"
  exit 1
fi
echo "every test passed on every path: ${paths[*]}"
