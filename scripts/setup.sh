#!/usr/bin/env bash
# Installs what the build, the server and the tests need; each step is skipped when already done.
# Sourced by serve.sh and test.sh (it also sets the shared environment).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ARTIFACTS_DIR="$ROOT/artifacts"
# Builds persist outside the clone, so a second run (and CI on the same machine) rebuilds nothing.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hugrt/target}"
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-0}"   # wasm test builds ~3x faster
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Mesa complains on stderr when this is unset.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/hugrt-xdg-$(id -u)}"
mkdir -p -m 0700 "$XDG_RUNTIME_DIR"
export PATH="$HOME/.cargo/bin:$PATH"

# 1. System packages: Chromium + ChromeDriver (browser tests, WebGPU on SwiftShader) and Mesa's
#    lavapipe (Vulkan on the CPU, for native kernel tests).
need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1 || need_apt+=(mesa-vulkan-drivers)
# Speech for the Whisper tests: espeak-ng speaks known sentences, sox resamples them to 16 kHz.
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
command -v sox >/dev/null || need_apt+=(sox)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "apt-get install ${need_apt[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# 2. Rust: the toolchain pinned in rust-toolchain.toml, with the wasm32 target.
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# 3. wasm-bindgen-cli at exactly the version of the wasm-bindgen crate in Cargo.lock.
WB_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)"
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WB_VERSION" ]; then
  say "cargo install wasm-bindgen-cli $WB_VERSION (about 5 minutes, once)"
  # Not --locked: the CLI's own lockfile pins a crate that the registry no longer serves.
  cargo install wasm-bindgen-cli --version "$WB_VERSION"
fi

# 4. npm packages from the committed lockfile (no install scripts: nothing downloads a browser).
lock_hash="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat node_modules/.hugrt-lock-sha256 2>/dev/null)" != "$lock_hash" ]; then
  say "npm ci"
  npm ci --ignore-scripts --no-audit --no-fund >/dev/null
  echo "$lock_hash" > node_modules/.hugrt-lock-sha256
fi

# 5. Fuzzing: a nightly toolchain and cargo-fuzz.
if [ "${HUGRT_NEED_FUZZ:-0}" = 1 ]; then
  if ! cargo +nightly --version >/dev/null 2>&1; then
    say "rustup toolchain install nightly"
    rustup toolchain install nightly --profile minimal
  fi
  if ! command -v cargo-fuzz >/dev/null; then
    say "cargo install cargo-fuzz"
    cargo install cargo-fuzz --version 0.13.2
  fi
fi
