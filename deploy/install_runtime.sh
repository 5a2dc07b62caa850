#!/usr/bin/env bash
# Install the on-device runtime of lighthead-edge into a fresh virtual environment: numpy, OpenCV (headless), click
# and ONE inference engine. No torch, no NNCF, no training code is needed to run a bundle.
#
#   deploy/install_runtime.sh [--engine openvino|onnxruntime|both] VENV [PACKAGE]
#
# --engine  the engine the device runs [default: openvino]; `both` installs the two (bigger, rarely needed).
# VENV      where to create the environment (e.g. /opt/lighthead-edge/venv); it must not exist yet.
# PACKAGE   what to install: a lighthead_edge wheel, a source checkout (default: this one), or a requirement string.
#
# Then copy a bundle (the folder `lighthead-edge export` wrote) to the device and run, e.g.:
#   VENV/bin/lighthead-edge run --model /opt/lighthead-edge/bundle --camera 0 --jsonl - --threads 2
# tests/runner/test_runtime_only.py::test_fresh_runtime_only_venv runs this script for each engine, then a bundle on a
# video, and prints the venv's size.
set -euo pipefail

ENGINE=openvino
if [ "${1:-}" = "--engine" ]; then
    ENGINE=${2:?usage: install_runtime.sh [--engine openvino|onnxruntime|both] VENV [PACKAGE]}
    shift 2
fi
case "$ENGINE" in
    openvino|onnxruntime) EXTRA="[$ENGINE]" ;;
    both) EXTRA="[openvino,onnxruntime]" ;;
    *) echo "error: --engine must be openvino, onnxruntime or both, not '$ENGINE'" >&2; exit 2 ;;
esac
VENV=${1:?usage: install_runtime.sh [--engine openvino|onnxruntime|both] VENV [PACKAGE]}
PACKAGE=${2:-$(cd "$(dirname "$0")/.." && pwd)}
PYTHON=${PYTHON:-python3}

if [ -e "$VENV" ]; then
    echo "error: $VENV exists; pick a new folder (the runtime is meant for a clean environment)" >&2
    exit 2
fi
"$PYTHON" -m venv "$VENV"
if [ -d "$PACKAGE" ]; then
    # Build from a copy of just the package: pip builds in place and would leave build/ and *.egg-info in a checkout.
    STAGE=$(mktemp -d)
    trap 'rm -rf "$STAGE"' EXIT
    cp "$PACKAGE/pyproject.toml" "$STAGE/"
    [ -f "$PACKAGE/README.md" ] && cp "$PACKAGE/README.md" "$STAGE/"
    (cd "$PACKAGE" && tar --exclude=__pycache__ -cf - lighthead_edge) | (cd "$STAGE" && tar -xf -)
    PACKAGE=$STAGE
fi
# The base dependencies of the package plus one engine extra are the runtime; [toolchain] (torch, NNCF, ...) is not.
if [ -d "$PACKAGE" ] || [ -f "$PACKAGE" ]; then
    TARGETS=("${PACKAGE}${EXTRA}")  # a folder or a wheel: path[extra]
else
    TARGETS=("$PACKAGE")  # a requirement string, and the engine(s) by name
    [ "$ENGINE" = both ] && TARGETS+=(openvino onnxruntime) || TARGETS+=("$ENGINE")
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check "${TARGETS[@]}"
"$VENV/bin/python" - <<'PY'
import sys
import lighthead_edge.runtime  # noqa: F401
from lighthead_edge.runtime.pipeline import Pipeline  # noqa: F401
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "nncf", "onnx"))
assert not heavy, f"the runtime imported {heavy}"
print("runtime OK: no torch")
PY
echo "installed: $("$VENV/bin/lighthead-edge" --version) with $ENGINE, $(du -sh "$VENV" | cut -f1) in $VENV"
