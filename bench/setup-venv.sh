#!/usr/bin/env bash
# The PyTorch anchor's venv at bench/.venv, idempotent: installs bench/requirements.txt once
# (about 3.5 GB with torch's CUDA wheels, a few minutes here) and again only when it changes.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
if ! cmp -s requirements.txt .venv/installed.txt; then
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -r requirements.txt
  cp requirements.txt .venv/installed.txt
fi
