#!/usr/bin/env bash
# Runs every test: native (wgpu on Vulkan; lavapipe without a GPU), the same tests compiled to
# wasm32 in headless Chromium (WebGPU on SwiftShader), end-to-end page tests (playwright-core),
# and a bounded fuzzing run of the file readers (FUZZ_SECONDS per target, default 60).
# The browser phase includes the weight-store tests against scripts/hub-server.mjs (started here).
# Installs what is missing first. Logs and screenshots go to artifacts/.
set -uo pipefail
HUGRT_NEED_FUZZ=1 source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
set +e

ARTIFACTS="$ROOT/artifacts"
mkdir -p "$ARTIFACTS/logs"
start=$(date +%s)
declare -A passed failed
failures=()

# Sums "test result: ok. N passed; M failed" lines of cargo's output.
count_cargo() { awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } } END { print p+0, f+0 }' "$1"; }
# A plain "NAME: N passed, M failed" line.
count_plain() { awk '/ passed, [0-9]+ failed$/ { p = $(NF-3); f = $(NF-1) } END { print p+0, f+0 }' "$1"; }
# node --test's spec reporter ends with "ℹ pass N" / "ℹ fail N".
count_node() { awk '/^ℹ pass / { p = $3 } /^ℹ fail / { f = $3 } END { print p+0, f+0 }' "$1"; }

phase() { # name, counter, command...
  local name="$1" counter="$2"; shift 2
  local log="$ARTIFACTS/logs/$name.log"
  say "$name: $*"
  "$@" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  read -r p f < <("$counter" "$log")
  passed[$name]=$p; failed[$name]=$f
  if [ "$status" -ne 0 ] || [ "$p" -eq 0 ]; then
    failures+=("$name (exit $status, $p passed, $f failed; log: artifacts/logs/$name.log)")
    [ "$f" -eq 0 ] && failed[$name]=1   # a phase that ran nothing or crashed counts as a failure
  fi
}

phase native count_cargo cargo test --all-targets
# The store's browser tests download from a local test hub (faults on request); its address is
# baked into the test at compile time (tests/store/browser.rs reads HUGRT_TEST_HUB).
HUB_PORT="${HUB_PORT:-8788}"
export HUGRT_TEST_HUB="http://127.0.0.1:$HUB_PORT"
node "$ROOT/scripts/hub-server.mjs" --port "$HUB_PORT" >"$ARTIFACTS/logs/hub-server.log" 2>&1 &
hub_pid=$!
trap 'kill "$hub_pid" 2>/dev/null' EXIT
for _ in $(seq 50); do grep -q "hub-server on" "$ARTIFACTS/logs/hub-server.log" && break; sleep 0.2; done
WASM_BINDGEN_TEST_TIMEOUT=600 CHROMEDRIVER=/usr/bin/chromedriver \
  phase browser count_cargo cargo test --target wasm32-unknown-unknown
kill "$hub_pid" 2>/dev/null
phase e2e count_node bash -c 'scripts/build-pkg.sh && node --test --test-reporter=spec tests/e2e/'
phase fuzz count_plain bash scripts/fuzz.sh

total_p=0; total_f=0
echo
echo "== hugrt tests ($(( $(date +%s) - start )) s) =="
for name in native browser e2e fuzz; do
  printf '%-8s %4d passed, %d failed\n' "$name" "${passed[$name]}" "${failed[$name]}"
  total_p=$((total_p + passed[$name])); total_f=$((total_f + failed[$name]))
done
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "total: $total_p passed, $total_f failed"
[ ${#failures[@]} -eq 0 ]
