#!/usr/bin/env bash
# The CPU fallback's benchmark in headless Chromium: builds examples/cpu_bench.rs for wasm32
# (release, simd128 from .cargo/config.toml) into www/cpu-bench/pkg, fetches SmolLM2 (models.sh)
# and prints load time, prefill and decode tok/s.   bash scripts/bench-cpu-browser.sh [prompt] [decode]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
MODELS="$(bash scripts/models.sh)"
cargo build --release --example cpu_bench --target wasm32-unknown-unknown
wasm-bindgen --target web --out-dir www/cpu-bench/pkg "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/examples/cpu_bench.wasm"
node scripts/bench-cpu-browser.mjs "$MODELS" "$@"
