#!/usr/bin/env bash
# Our CPU step against PyTorch on this machine, back to back in one run:
#   bash scripts/bench-cpu.sh [steps]
# 1. the float32 GEMM peak (numpy on OpenBLAS, every core): the physical reference;
# 2. `metaprompt bench tune` (our CPU engine, release build), which also writes its prompt and
#    batch (--save) so that
# 3. bench/t5_step.py times the same step in PyTorch eager, PEFT (loading our prompt folder as it
#    is) and torch.compile, each checked to get our loss.
# Raw output in results/bench/cpu.txt, then the ratios. Needs the converted model (scripts/test.sh
# or scripts/serve.sh fetch it) and makes bench/.venv (bench/setup-venv.sh, ~3.5 GB, once). Run it
# on an idle machine: the figures are wall-clock medians.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-10}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/metaprompt/target}"
export NODEVICE_SELECT=1 OPENBLAS_NUM_THREADS=$(nproc)
bash bench/setup-venv.sh
cargo build --release --bin metaprompt
py=bench/.venv/bin/python
save=$(mktemp -d)
trap 'rm -rf "$save"' EXIT
out=results/bench/cpu.txt
mkdir -p results/bench
{
  echo "# bash scripts/bench-cpu.sh $steps, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (dirty)')"
  echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) threads, flags: $(grep -m1 -o 'avx512f\|avx2' /proc/cpuinfo | head -1); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$py" bench/gemm_peak.py
  "$CARGO_TARGET_DIR/release/metaprompt" bench tune --steps "$steps" --save "$save"
  "$py" bench/t5_step.py --bench "$save" --steps "$steps"
} 2>&1 | tee "$out"
median() { sed -n "s/^$1.*median \([0-9.]*\) .*/\1/p" "$out" | head -1; }
peak=$(median "numpy sgemm")
ours=$(median "bench tune")
flop=$(sed -n 's/^bench tune.* \([0-9.]*\) GFLOP\/step.*/\1/p' "$out")
{
  echo "# summary"
  for who in "pytorch eager" "pytorch peft" "torch.compile"; do
    t=$(median "$who")
    echo "$who: $t ms/step; ours takes $(awk -v a="$t" -v b="$ours" 'BEGIN {printf "%.2f", b / a}') of its time (below 1: ours is faster)"
  done
  echo "ours: $ours ms/step = $(awk -v f="$flop" -v t="$ours" -v p="$peak" 'BEGIN {printf "%.0f GFLOP/s, %.0f%% of the %.0f GFLOP/s sgemm peak (floor at the peak: %.0f ms/step)", f / t * 1e3, 100 * f / t * 1e3 / p, p, f / p * 1e3}')"
} | tee -a "$out"
