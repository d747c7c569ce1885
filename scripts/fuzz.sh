#!/usr/bin/env bash
# Fuzzes the file readers with cargo-fuzz (libFuzzer + AddressSanitizer, overflow checks on) for
# FUZZ_SECONDS per target (default 60). Crashes land in fuzz/artifacts/ and fail the run; inputs
# that found new coverage are added to a working copy of the committed corpus in fuzz/corpus/.
# Prints "fuzz: N passed, M failed" (one per target) at the end.
set -uo pipefail
HUGRT_NEED_FUZZ=1 source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
set +e
SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
WORK="$ARTIFACTS_DIR/fuzz-corpus"
export CARGO_TARGET_DIR="$CARGO_TARGET_DIR/fuzz"
passed=0; failed=0
for target in safetensors gguf shard_index; do
  rm -rf "$WORK/$target"; mkdir -p "$WORK/$target"
  say "fuzz $target for ${SECONDS_PER_TARGET}s"
  (cd fuzz && cargo +nightly fuzz run "$target" "$WORK/$target" "corpus/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 \
      2>&1 | grep -E "^(#[0-9]+ *DONE|Done|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|thread .* panicked)|Running|Finished" )
  if [ "${PIPESTATUS[0]}" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
