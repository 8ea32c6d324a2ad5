#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/, libFuzzer on the nightly toolchain) for SECONDS each
# (default 600), from the committed seeds in fuzz/corpus/<target>/ into a scratch corpus
# (fuzz/corpus-run/, not committed). A crash stops the script; its input lands in
# fuzz/artifacts/<target>/: fix the bug, then copy the input into fuzz/corpus/<target>/ so that
# the test command replays it (tests/fuzz_corpus.rs). Output: results/fuzz.txt.
# Usage: bash scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(paste checkpoint peft config record)
# cargo-fuzz builds into fuzz/target (an ASan build of the whole library: about 40 minutes cold
# on 2 cores); a CARGO_TARGET_DIR from the test script would send it elsewhere, cold again.
unset CARGO_TARGET_DIR
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "[fuzz] cargo install cargo-fuzz"
  cargo +nightly install --locked cargo-fuzz
fi
mkdir -p results
log=results/fuzz.txt
{
  echo "# bash scripts/fuzz.sh $secs ${targets[*]}  ($(git rev-parse --short HEAD), $(date -u +%FT%TZ))"
  echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
} > "$log"
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus-run/$t"
  cp -n "fuzz/corpus/$t/"* "fuzz/corpus-run/$t/"
  echo "[fuzz] $t for $secs s"
  # -rss_limit_mb: a bomb of an allocation is a finding too; one job on each core.
  (cd fuzz && cargo +nightly fuzz run "$t" "corpus-run/$t" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1) 2>&1 \
    | tee "/tmp/fuzz-$t.log" | grep -E '^#[0-9]+ +(INITED|DONE)|^stat::|ERROR|panicked|Done' || true
  grep -E '^#[0-9]+ +DONE|^stat::number_of_executed_units|^stat::peak_rss_mb|^stat::new_units_added|ERROR|panicked' "/tmp/fuzz-$t.log" \
    | sed "s/^/$t: /" >> "$log"
  if grep -q -E 'ERROR: libFuzzer|panicked' "/tmp/fuzz-$t.log"; then
    echo "[fuzz] $t found a crash: see fuzz/artifacts/$t/ and /tmp/fuzz-$t.log" >&2
    exit 1
  fi
done
cat "$log"
