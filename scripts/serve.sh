#!/usr/bin/env bash
# The main job: installs what is missing, builds the wasm package and serves the spaces in www/ on
# http://127.0.0.1:${PORT:-8080}/ until interrupted.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/build-pkg.sh"
exec node scripts/serve.mjs --root www --port "${PORT:-8080}" --host "${HOST:-127.0.0.1}"
