#!/usr/bin/env bash
# Create ./.venv (once) with the toolchain: torch pinned FIRST (a CPU build on these machines; an unpinned torch
# would pull a CUDA build of several GB), then the package with its toolchain and dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.lighthead-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q "torch==2.13.0" -e ".[toolchain,dev]"
  .venv/bin/python -c "import torch, lighthead_edge; assert torch.__version__.startswith('2.13.0'), torch.__version__"
  touch "$stamp"
fi
