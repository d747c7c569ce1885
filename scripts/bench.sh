#!/usr/bin/env bash
# Kernel micro-benchmarks: natively (wgpu on Vulkan: lavapipe without a GPU) and in headless
# Chromium (WebGPU on SwiftShader without a GPU). Prints both tables. BENCH_FULL=1 for more
# iterations. A benchmark, not a test: it prints figures and judges nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/build-pkg.sh"
quick=--quick; [ "${BENCH_FULL:-0}" = 1 ] && quick=
say "native: hugrt bench kernels $quick"
cargo run --release --quiet -- bench kernels $quick
say "browser: www/bench.html in headless Chromium"
node scripts/bench-browser.mjs ${BENCH_FULL:+--full}
