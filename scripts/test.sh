#!/usr/bin/env bash
# The test command of the README and of CI: install the Debian packages the embedding tests run (GStreamer, ffmpeg,
# a C toolchain, valgrind) and set up ./.venv if needed, then run the whole suite (slow runs excluded;
# CI runs their small real versions, e.g. tests/test_train.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_system.sh
bash scripts/setup_env.sh
exec .venv/bin/python -m pytest -m "not slow" -q "$@"
