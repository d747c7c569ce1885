#!/usr/bin/env bash
# Constrained decoding's cost: SmolLM2-135M-Instruct, the same chat request with and without a JSON
# schema (scripts/bench-grammar-workload.mjs), greedy, 48 tokens at most: decode tok/s of each and
# the grammar mask's median and worst milliseconds per token, natively (release CLI: CPU backend,
# and wgpu on Vulkan: lavapipe without a GPU) and in headless Chromium (wasm CPU backend).
# A benchmark, not a test.   bash scripts/bench-grammar.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/build-pkg.sh"
MODEL="$(bash scripts/models.sh)/SmolLM2-135M-Instruct.Q4_1.gguf"
cargo build --release --quiet --bin hugrt
HUGRT="$CARGO_TARGET_DIR/release/hugrt"
eval "$(node --input-type=module -e "import { SCHEMA, REQUEST } from './scripts/bench-grammar-workload.mjs';
  console.log('SCHEMA=' + JSON.stringify(JSON.stringify(SCHEMA)) + '; REQUEST=' + JSON.stringify(REQUEST));")"
for device in cpu gpu; do
  run() { "$HUGRT" generate --model "$MODEL" --device "$device" --chat --prompt "$REQUEST" --max-tokens 48 --json "$@"; }
  run >/dev/null   # warm-up (pipeline compilation, page cache)
  free="$(run)"
  constrained="$(run --json-schema "$SCHEMA")"
  node -e '
    const [free, c] = [JSON.parse(process.argv[1]), JSON.parse(process.argv[2])];
    const f = free.timings.decodeTokPerS, g = c.timings.decodeTokPerS;
    console.log(JSON.stringify({ where: "native", device: `${c.device} (${c.adapter})`, freeTokPerS: +f.toFixed(1), freeTokens: free.usage.completionTokens,
      grammarTokPerS: +g.toFixed(1), grammarTokens: c.usage.completionTokens, ratio: +(g / f).toFixed(2), maskMs: c.timings.maskMs, text: c.text }));' "$free" "$constrained"
done
node scripts/bench-grammar-browser.mjs cpu
