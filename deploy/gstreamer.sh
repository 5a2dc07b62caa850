#!/usr/bin/env bash
# A GStreamer pipeline feeding lighthead-edge through a pipe: the decoder and scaler are GStreamer's (hardware ones
# where the board has them), detection is lighthead-edge's. `fdsink fd=1` writes raw BGR frames to stdout; -q keeps
# gst-launch's own messages off it. For detection inside a GStreamer pipeline instead, see gstreamer/README.md
# (the lightheaddetect element).
#
#   deploy/gstreamer.sh [--size WxH] [--fps N] BUNDLE [rtsp://URL | /dev/videoN | FILE] [-- RUN_OPTIONS...]
#   deploy/gstreamer.sh [--size WxH] [--fps N] --source 'GST ELEMENTS' BUNDLE [-- RUN_OPTIONS...]
#       > detections.jsonl
#
# The source: a V4L2 camera (/dev/video0 when none is named), an RTSP URL (rtspsrc over TCP, then decodebin), a file
# (filesrc ! decodebin), or --source with any gst-launch fragment that puts out raw video, split at spaces, e.g.
# --source 'videotestsrc num-buffers=100' or --source 'v4l2src device=/dev/video2 ! image/jpeg ! jpegdec'.
# Frames are converted to BGR and scaled to --size (default 640x480), the size --stdin-raw is given.
# RUN_OPTIONS go to `lighthead-edge run` (e.g. --threads 2 --min-score 0.5).
#
# Cameras and URLs are live: videorate sets the rate (--fps, default 15) and the runner keeps only the newest frame
# while the detector is busy (the JSON lines' `frame` numbers have gaps where frames were dropped). A file or a
# --source gives one line per frame, in order, as fast as the detector goes (--no-drop; --fps N resamples them
# with videorate first). Exit status: the first failure's (set -o pipefail), e.g. lighthead-edge's 5 for a bad bundle.
set -euo pipefail
usage="usage: gstreamer.sh [--size WxH] [--fps N] [--source 'GST ELEMENTS'] BUNDLE [rtsp://URL|/dev/videoN|FILE] \
[-- RUN_OPTIONS...]"
fail() { echo "gstreamer.sh: $*" >&2; exit 2; }
W=640
H=480
FPS=
FRAGMENT=
while [ $# -gt 0 ]; do
    case $1 in
        --size) [[ ${2:-} =~ ^([1-9][0-9]*)x([1-9][0-9]*)$ ]] || fail "--size wants WxH, e.g. 640x480; $usage"
                W=${BASH_REMATCH[1]}; H=${BASH_REMATCH[2]}; shift 2 ;;
        --fps) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || fail "--fps wants a whole number of frames per second; $usage"
               FPS=$2; shift 2 ;;
        --source) [ -n "${2:-}" ] || fail "--source wants a gst-launch fragment; $usage"
                  FRAGMENT=$2; shift 2 ;;
        -h|--help) echo "$usage"; exit 0 ;;
        --) fail "no BUNDLE; $usage" ;;
        -*) fail "unknown option $1; $usage" ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || fail "no BUNDLE; $usage"
BUNDLE=$1
shift
INPUT=
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
    [ -z "$FRAGMENT" ] || fail "give --source or an input, not both; $usage"
    INPUT=$1
    shift
fi
if [ $# -gt 0 ]; then
    [ "$1" = "--" ] || fail "unexpected $1; $usage"
    shift
fi

LIVE=1
if [ -n "$FRAGMENT" ]; then
    read -r -a SRC <<<"$FRAGMENT"  # gst-launch takes the pipeline as words, as a shell would split it
    LIVE=0
elif [[ $INPUT == rtsp://* || $INPUT == rtsps://* ]]; then
    SRC=(rtspsrc "location=$INPUT" latency=200 protocols=tcp ! decodebin)
elif [ -z "$INPUT" ] || [[ $INPUT == /dev/video* ]]; then
    SRC=(v4l2src "device=${INPUT:-/dev/video0}")
elif [ -f "$INPUT" ]; then
    SRC=(filesrc "location=$INPUT" ! decodebin)
    LIVE=0
else
    fail "$INPUT is no file, /dev/video device or rtsp:// URL; $usage"
fi

RATE=()
CAPS="video/x-raw,format=BGR,width=$W,height=$H"
if [ -n "$FPS" ] || [ $LIVE = 1 ]; then
    FPS=${FPS:-15}
    RATE=(! videorate)
    CAPS="$CAPS,framerate=$FPS/1"
fi
DROP=()
[ $LIVE = 1 ] || DROP=(--no-drop)

# GStreamer's Python plugin loader embeds Python and finds it as `python3` on PATH. A venv's python3 there (an
# activated venv, the one lighthead-edge runs from) makes it start inside that venv without gi, fail, and be
# blacklisted in the registry cache (~/.cache/gstreamer-1.0) until the cache is removed. So gst-launch runs with the
# venvs taken off PATH.
gst_path() {
    local dir out=
    IFS=: read -r -a dirs <<<"$PATH"
    for dir in "${dirs[@]}"; do
        [ -f "$dir/../pyvenv.cfg" ] || out=${out:+$out:}$dir
    done
    echo "$out"
}

# sync=false: frames go out as soon as they are decoded (a live source paces itself).
PATH=$(gst_path) gst-launch-1.0 -q "${SRC[@]}" ! videoconvert ! videoscale "${RATE[@]}" ! "$CAPS" ! fdsink fd=1 sync=false |
    lighthead-edge run --model "$BUNDLE" --stdin-raw "${W}x${H}" ${FPS:+--fps "$FPS"} --jsonl - --stats-every 10 \
        "${DROP[@]}" "$@"
