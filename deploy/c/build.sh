#!/usr/bin/env bash
# Build liblighthead + lighthead_detect against the venv's OpenVINO wheel and install the deployable folder:
#   bash deploy/c/build.sh [PREFIX]        (PREFIX default: deploy/c/out/lighthead; build files in deploy/c/build)
# Environment: PYTHON (default: the checkout's .venv/bin/python, else python3) finds the openvino wheel;
# BUILD_DIR overrides the build folder.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
prefix="$(realpath -m "${1:-$here/out/lighthead}")"
build="${BUILD_DIR:-$here/build}"
python="${PYTHON:-$root/.venv/bin/python}"
[[ -x "$python" ]] || python=python3
for tool in cmake cc make pkg-config; do
  command -v "$tool" >/dev/null ||
    { echo "build.sh: $tool not found; install cmake gcc make pkg-config (scripts/setup_system.sh)" >&2; exit 1; }
done
pkg-config --exists libcjson || { echo "build.sh: cJSON not found; apt-get install libcjson-dev" >&2; exit 1; }
find_ov='import openvino, os; print(os.path.join(os.path.dirname(openvino.__file__), "cmake"))'
ov_dir="$("$python" -c "$find_ov" 2>/dev/null)" ||
  { echo "build.sh: $python can't import openvino; set PYTHON to a python with the openvino wheel" >&2; exit 1; }
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release -DOpenVINO_DIR="$ov_dir" \
  -DOpenVINO_ROOT="$(dirname "$ov_dir")" >/dev/null
cmake --build "$build" --parallel "$(nproc)" >/dev/null
cmake --install "$build" --prefix "$prefix" >/dev/null
echo "installed $prefix ($(du -sh "$prefix" | cut -f1)): bin/lighthead_detect, lib/liblighthead.so, include/lighthead.h"
