#!/usr/bin/env bash
# Builds the npm package (wasm + JS glue) as wasm-pack would, with the settings in wasm-pack.toml.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

# `key = value` from wasm-pack.toml, without comment, quotes or brackets (first item of a list).
setting() { sed -n "s/^$1 *= *//p" wasm-pack.toml | head -1 | sed 's/#.*//' | tr -d ' []"' | cut -d, -f1; }
OUT_DIR="$(setting out-dir)"
TARGET="$(setting targets)"
WASM_OPT="$(setting wasm-opt)"

say "cargo build --release --target wasm32-unknown-unknown"
cargo build --release --lib --target wasm32-unknown-unknown
say "wasm-bindgen --target $TARGET --out-dir $OUT_DIR"
wasm-bindgen --target "$TARGET" --out-dir "$OUT_DIR" "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/hugrt.wasm"
if [ "$WASM_OPT" = "true" ]; then
  say "wasm-opt -O3 (npm binaryen)"
  npx --no-install wasm-opt -O3 --enable-reference-types --enable-bulk-memory "$OUT_DIR/hugrt_bg.wasm" -o "$OUT_DIR/hugrt_bg.wasm"
fi
# The hand-written layer (pipeline(), error classes, Worker mode) and the npm manifest.
cp js/index.js js/index.d.ts js/worker.js js/worker-client.js js/package.json js/README.md "$OUT_DIR/"
cp LICENSE "$OUT_DIR/"
rm -f "$OUT_DIR/.gitignore"
say "package in $OUT_DIR: $(du -h "$OUT_DIR/hugrt_bg.wasm" | cut -f1) of wasm"
