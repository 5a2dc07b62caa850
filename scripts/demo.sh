#!/usr/bin/env bash
# The demo of the README: set up ./.venv if needed, then run the whole job on the built-in default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/lighthead-edge demo "$@"
