#!/usr/bin/env bash
# A model bigger than wasm's 4 GiB address space, end to end in headless Chromium (a figure for the
# README, not a test): makes a synthetic 4.59 GB GGUF in Mistral-7B's shape (random Q4_K/Q6_K
# weights, scripts/fixtures/make_big_gguf.py; once, in ~/.cache/hugrt/big), serves it from a local
# hub mirror, and in one page: pipeline('text-generation', …, { device: 'webgpu' }) streams it into
# IndexedDB (on disk: a persistent profile), loads it onto WebGPU (SwiftShader) tensor by tensor,
# and runs a prefill and one decode step. Prints download, load and step times and the wasm memory
# peak against the file size.        bash scripts/big-model.sh   (needs ~10 GB of free disk)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/build-pkg.sh"
BIG="$HOME/.cache/hugrt/big"
FILE="$BIG/hugrt-test/big-7b/model-q4_k_m.gguf"
if [ ! -s "$FILE" ]; then
  mkdir -p "$(dirname "$FILE")"
  say "making $FILE (random weights)"
  VENV="$HOME/.cache/hugrt/venv-gguf"   # gguf-py and numpy from PyPI, once
  [ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q gguf numpy; }
  "$VENV/bin/python" scripts/fixtures/make_big_gguf.py "$FILE.part" && mv "$FILE.part" "$FILE"
fi
node scripts/big-model-browser.mjs "$BIG" "$(basename "$FILE")"
