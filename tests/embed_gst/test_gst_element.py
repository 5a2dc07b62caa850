"""The lightheaddetect GStreamer element, run by Debian's gst-launch-1.0 with the documented environment: found and
described by gst-inspect; one JSONL line per frame with the Python runtime's detections; buffers untouched without
``draw`` and drawn exactly as the runtime draws with it; a video that plays; element messages an application can read
field by field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
from gst_helpers import (
    DECODE,
    FRAMES,
    HEIGHT,
    REPO,
    SYSTEM_PYTHON,
    WIDTH,
    assert_jsonl_matches,
    assert_same_detections,
    gst_ok,
    read_raw,
    run,
)

from lighthead_edge.runtime.draw import draw_detections

PROPERTIES = ("model", "backend", "precision", "threads", "threshold", "jsonl", "draw")


def read_jsonl(path: Path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n"), f"{path} does not end on a complete line"
    return [json.loads(line) for line in text.splitlines()]


def test_inspect_finds_the_element(gst_env):
    """gst-inspect-1.0 with GST_PLUGIN_PATH=deploy/gstreamer lists the element, BGR caps and every property."""
    proc = run(["gst-inspect-1.0", "lightheaddetect"], gst_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "lighthead-edge detector" in out and "GstBaseTransform" in out
    assert re.search(r"SINK template: 'sink'.*?format: BGR", out, re.S) and re.search(r"SRC template.*?BGR", out, re.S)
    for name in PROPERTIES:
        assert re.search(rf"^\s+{name}\s+:", out, re.M), f"property {name} not listed:\n{out}"
    assert 'Default: "openvino"' in out and 'Default: "fp32"' in out


def test_pipeline_writes_jsonl_and_a_video_that_plays(gst_env, gst_bundle, clip, clip_frames, detector, expected,
                                                      tmp_path):  # fmt: skip
    """The README's pipeline, draw=true into an MJPEG AVI: 30 JSONL lines equal to the Python runtime's on the same
    decoded frames, 30 element messages (gst-launch -m), and a 30-frame 160x120 video whose frames show the boxes."""
    jsonl, video = tmp_path / "out.jsonl", tmp_path / "out.avi"
    proc = gst_ok(gst_env, f"filesrc location={clip} ! {DECODE} ! lightheaddetect model={gst_bundle} threads=1 "
                           f"jsonl={jsonl} draw=true ! videoconvert ! jpegenc ! avimux ! filesink location={video}",
                  "-m")  # fmt: skip
    assert proc.stdout.count('from element "lightheaddetect0" (element): lightheaddetect, frame=(guint64)') == FRAMES
    lines = read_jsonl(jsonl)
    want = expected(clip_frames)
    assert_jsonl_matches(lines, want)
    assert sum(len(d) for d in want) > 0, "the tiny bundle (score_thresh 0) should detect something"
    assert lines[1]["timestamp"] > lines[0]["timestamp"] >= 0.0  # the buffers' pts, in seconds

    cap = cv2.VideoCapture(str(video))
    frames = []
    while (ok_frame := cap.read())[0]:
        frames.append(ok_frame[1])
    cap.release()
    assert len(frames) == FRAMES and frames[0].shape == (HEIGHT, WIDTH, 3)
    # MJPEG is lossy: where the runtime draws (its draw_detections on the same frames), the video must differ from
    # the input far more than the codec's noise elsewhere.
    drawn = np.stack([draw_detections(f, d.boxes, d.scores, d.labels, d.class_names, min_score=0.0) for f, d in
                      zip(clip_frames, map(detector, clip_frames))])  # fmt: skip
    where = (drawn != clip_frames).any(axis=-1)
    diff = np.abs(np.stack(frames).astype(np.int16) - clip_frames.astype(np.int16)).mean(axis=-1)
    inside, outside = diff[where].mean(), diff[~where].mean()
    assert where.mean() > 0.01 and inside > 3 * outside + 10, f"boxes not in the video: {inside:.1f} vs {outside:.1f}"


def test_passthrough_untouched_draw_as_runtime_and_messages(gst_env, gst_bundle, clip, clip_frames, detector,
                                                            expected, tmp_path):  # fmt: skip
    """One decoded stream teed to two elements: without draw the raw output is byte-identical to the input (and the
    drawing branch beside it did not touch it), with draw it equals the runtime's draw_detections on the same frames.
    The element messages, read field by field with Debian's python3-gi, carry the JSONL record and its arrays."""
    passed, drawn = tmp_path / "pass.bgr", tmp_path / "drawn.bgr"
    element = f"lightheaddetect model={gst_bundle} threads=1"
    pipeline = (f"filesrc location={clip} ! {DECODE} ! tee name=t "
                f"t. ! queue ! {element} name=plain ! filesink location={passed} "
                f"t. ! queue ! {element} name=drawing draw=true ! filesink location={drawn}")  # fmt: skip
    proc = run([SYSTEM_PYTHON, str(REPO / "tests" / "embed_gst" / "gst_bus_probe.py"), pipeline], gst_env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr

    assert read_raw(passed, WIDTH, HEIGHT).tobytes() == clip_frames.tobytes(), "draw=false changed the frames"
    got = read_raw(drawn, WIDTH, HEIGHT)
    assert len(got) == FRAMES
    for i, frame in enumerate(clip_frames):
        dets = detector(frame)
        want = draw_detections(frame, dets.boxes, dets.scores, dets.labels, dets.class_names, min_score=0.0)
        assert np.array_equal(got[i], want), f"frame {i} is not drawn as the runtime's draw_detections draws it"
        assert (got[i] != frame).any(), f"frame {i}: nothing drawn"

    want = expected(clip_frames)
    messages = [json.loads(line) for line in proc.stdout.splitlines()]
    for name in ("plain", "drawing"):
        mine = [m for m in messages if m["element"] == name]
        assert [m["frame"] for m in mine] == list(range(FRAMES)), f"{name}: one message per frame"
        for m, dets in zip(mine, want):
            record = json.loads(m["json"])
            assert_same_detections(record["detections"], dets, f"{name} message {m['frame']}")
            items = record["detections"]
            assert (record["frame"], m["width"], m["height"], m["count"]) == (m["frame"], WIDTH, HEIGHT, len(items))
            assert m["boxes"] == [v for d in items for v in d["box"]]
            assert m["scores"] == [d["score"] for d in items]
            assert m["labels"] == [d["label"] for d in items]
            assert m["classes"] == "\n".join(d["class"] for d in items)
            assert abs(m["pts"] / 1e9 - record["timestamp"]) < 1e-6 and m["timestamp"] == record["timestamp"]
