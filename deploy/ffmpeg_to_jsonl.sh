#!/usr/bin/env bash
# Any input FFmpeg can open -> raw BGR frames on a pipe -> lighthead-edge -> one JSON line per frame on stdout.
# No Python glue: the runner reads fixed-size bgr24 frames from stdin (--stdin-raw WxH).
#
#   deploy/ffmpeg_to_jsonl.sh INPUT BUNDLE [WIDTH HEIGHT] [-- RUN_OPTIONS...] > detections.jsonl
#
# INPUT: a file, rtsp://..., http(s)://..., /dev/video0 (V4L2). Frames are scaled to WIDTH x HEIGHT (default
# 640x480), the size --stdin-raw is given. RUN_OPTIONS go to `lighthead-edge run` (e.g. --threads 2 --min-score 0.5).
#
# A file gives one line per frame: it is decoded as fast as the detector takes frames and none is dropped
# (--no-drop; frames are numbered from 0). REALTIME=1 feeds a file at its own frame rate instead (-re), as a live
# source would. A live input (stream, camera) keeps only the newest frame while the detector is busy, so the `frame`
# numbers of the JSON lines have gaps where frames were dropped.
# ffmpeg's own messages stay on stderr (-loglevel error); stdout carries only JSON lines. Exit status: the first
# failure's (set -o pipefail), e.g. lighthead-edge's 5 for a bad bundle.
set -euo pipefail
usage="usage: ffmpeg_to_jsonl.sh INPUT BUNDLE [WIDTH HEIGHT] [-- RUN_OPTIONS...]"
INPUT=${1:?$usage}
BUNDLE=${2:?$usage}
shift 2
W=640
H=480
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
    [ $# -ge 2 ] || { echo "ffmpeg_to_jsonl.sh: WIDTH without HEIGHT; $usage" >&2; exit 2; }
    W=$1
    H=$2
    shift 2
fi
if [ $# -gt 0 ]; then
    [ "$1" = "--" ] || { echo "ffmpeg_to_jsonl.sh: unexpected $1; $usage" >&2; exit 2; }
    shift
fi
[[ $W =~ ^[1-9][0-9]*$ && $H =~ ^[1-9][0-9]*$ ]] || { echo "ffmpeg_to_jsonl.sh: bad size ${W}x${H}; $usage" >&2; exit 2; }

IN=()
DROP=()
if [ -f "$INPUT" ]; then
    [ "${REALTIME:-0}" = 1 ] && IN=(-re) || DROP=(--no-drop)
elif [[ $INPUT == /dev/video* ]]; then
    IN=(-f v4l2)
fi

# -an/-sn: frames only; -fps_mode passthrough: one raw frame per decoded frame (no duplicates or drops to hit a rate).
ffmpeg -hide_banner -loglevel error -nostdin "${IN[@]}" -i "$INPUT" -an -sn -fps_mode passthrough \
    -vf "scale=${W}:${H}" -pix_fmt bgr24 -f rawvideo - |
    lighthead-edge run --model "$BUNDLE" --stdin-raw "${W}x${H}" --jsonl - --stats-every 10 "${DROP[@]}" "$@"
