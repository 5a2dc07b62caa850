#!/usr/bin/env bash
# A GStreamer pipeline feeding lighthead-edge through a pipe: the decoder and scaler are GStreamer's (hardware ones
# where the board has them), detection is lighthead-edge's. `fdsink fd=1` writes raw frames to stdout; -q keeps
# gst-launch's own messages off it.
#
#   deploy/gstreamer.sh BUNDLE [rtsp://camera/stream] > detections.jsonl
#
# Caps must say BGR at a fixed size, and --stdin-raw must name the same size.
set -euo pipefail
BUNDLE=${1:?usage: gstreamer.sh BUNDLE [RTSP_URL]}
URL=${2:-}
W=640
H=480

if [ -n "$URL" ]; then
    SRC=(rtspsrc "location=$URL" latency=200 protocols=tcp ! decodebin)
else
    SRC=(v4l2src device=/dev/video0)  # a V4L2 camera
fi
gst-launch-1.0 -q "${SRC[@]}" ! videoconvert ! videoscale ! videorate \
    ! "video/x-raw,format=BGR,width=$W,height=$H,framerate=15/1" ! fdsink fd=1 sync=false |
    lighthead-edge run --model "$BUNDLE" --stdin-raw "${W}x${H}" --fps 15 --jsonl - --stats-every 10
