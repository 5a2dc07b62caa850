#!/usr/bin/env bash
# Any input FFmpeg can open -> raw BGR frames on a pipe -> lighthead-edge -> one JSON line per frame on stdout.
# No Python glue: the runner reads fixed-size bgr24 frames from stdin (--stdin-raw WxH).
#
#   deploy/ffmpeg_to_jsonl.sh INPUT BUNDLE [WIDTH HEIGHT] > detections.jsonl
#
# INPUT: rtsp://..., a file, /dev/video0 (with -f v4l2), ... The frame size given to --stdin-raw must be the size
# ffmpeg scales to. ffmpeg's own messages stay on stderr (-loglevel error); stdout carries only frames.
# For a file, -re feeds it at its own frame rate, as a live source would; drop -re (and add --no-drop) to process
# every frame as fast as possible.
set -euo pipefail
INPUT=${1:?usage: ffmpeg_to_jsonl.sh INPUT BUNDLE [WIDTH HEIGHT]}
BUNDLE=${2:?usage: ffmpeg_to_jsonl.sh INPUT BUNDLE [WIDTH HEIGHT]}
W=${3:-640}
H=${4:-480}
RE=()
[ -f "$INPUT" ] && RE=(-re)

ffmpeg -hide_banner -loglevel error -nostdin "${RE[@]}" -i "$INPUT" \
    -vf "scale=${W}:${H}" -pix_fmt bgr24 -f rawvideo - |
    lighthead-edge run --model "$BUNDLE" --stdin-raw "${W}x${H}" --jsonl - --stats-every 10
