#!/usr/bin/env bash
# Side-by-side timing of two builds of the CLI on the same machine in the same run, rounds
# interleaved (A B A B ...) so drift and other load hit both alike:
#   bash scripts/bench-ab.sh OLD_BINARY NEW_BINARY [rounds] [steps]
# Runs `bench tune` on our CPU engine and on lavapipe (our WGSL kernels) and prints each binary's
# median of the per-round medians. Raw output goes to results/bench/ab-<date>.txt. Build the old
# binary from the previous commit, e.g. `git worktree add /tmp/base HEAD~1` and
# `cargo build --release --bin metaprompt` there.
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:?old binary}; b=${2:?new binary}; rounds=${3:-3}; steps=${4:-10}
export NODEVICE_SELECT=1
out=results/bench/ab-$(date -u +%Y-%m-%d).txt
mkdir -p results/bench
{
  echo "# scripts/bench-ab.sh $a $b $rounds $steps, $(date -u +%FT%TZ)"
  echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) threads; load $(cut -d' ' -f1-3 /proc/loadavg)"
  for bin in "$a" "$b"; do echo "# $bin: $(sha256sum "$bin" | cut -c1-16)"; done
} | tee "$out"
run() { # label binary args...
  local label=$1 bin=$2; shift 2
  local line
  line=$("$bin" bench tune "$@" 2>&1 | tee -a "$out" | grep '^bench tune' || true)
  echo "$label $(sed -n 's/.*median \([0-9.]*\) ms\/step.*/\1/p' <<<"$line")" >> "$out.medians"
}
rm -f "$out.medians"
for ((i = 1; i <= rounds; i++)); do
  for side in A B; do
    bin=$a; [ "$side" = B ] && bin=$b
    echo "## round $i $side cpu ours" >> "$out"; run "$side-cpu" "$bin" --steps "$steps"
    echo "## round $i $side lavapipe ours" >> "$out"; run "$side-wgpu" "$bin" --device wgpu --steps 3
  done
done
echo "# median of round medians (ms/step):" | tee -a "$out"
for key in cpu wgpu; do
  ma=$(grep "^A-$key " "$out.medians" | cut -d' ' -f2 | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
  mb=$(grep "^B-$key " "$out.medians" | cut -d' ' -f2 | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
  echo "$key: old $ma, new $mb, new/old $(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.3f", b / a}')" | tee -a "$out"
done
rm -f "$out.medians"
