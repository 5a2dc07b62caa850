#!/usr/bin/env bash
# The Debian packages that the embedding tests run for real (CI starts on a fresh machine): GStreamer with its Python
# plugin loader and RTSP server, ffmpeg, a C toolchain with cmake, valgrind, cJSON and OpenSSL's libcrypto.
# Installs only what is missing (apt-get update once, quietly). Without root it installs nothing and says so: the
# tests that need a missing tool then fail, each naming it.
set -euo pipefail
PACKAGES=(
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-libav python3-gst-1.0 gstreamer1.0-python3-plugin-loader gir1.2-gst-rtsp-server-1.0 python3-gi
  ffmpeg cmake gcc g++ make pkg-config valgrind libcjson-dev libssl-dev
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "setup_system: not root (or no apt-get); missing Debian packages: ${missing[*]}" >&2
  echo "setup_system: the tests that use them will fail; install them with: apt-get install ${missing[*]}" >&2
  exit 0
fi
echo "setup_system: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
