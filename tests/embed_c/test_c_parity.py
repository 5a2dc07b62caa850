"""The C runtime against the Python one on the same bundles and frames: the CLI's JSONL against the Python
Detector's records and against ``lighthead-edge run --stdin-raw --jsonl -``, the library through ctypes (packed and
padded rows), and the synthetic bundle's edge cases (boxes outside the frame, labels outside 1..C, --min-score)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from embed_c_lib import FAKE_SIZE, CDetector, fake_frame, jsonl, run_cli, without_timestamps

from lighthead_edge.runtime.bundle import load_bundle
from lighthead_edge.runtime.detector import Detector
from lighthead_edge.runtime.outputs import detections_record

BOX_PX, SCORE = 0.5, 1e-4  # the parity tolerances (the JSON's rounding is 0.005 px and 5e-5)


def python_records(bundle: Path, frames: np.ndarray, precision: str, min_score: float) -> list[dict]:
    detector = Detector(bundle, backend="openvino", precision=precision, threads=1)
    return [detections_record(i, 0.0, f.shape[:2], detector(f), min_score) for i, f in enumerate(frames)]


def assert_close(c_records: list[dict], py_records: list[dict]) -> None:
    """Same frames, same number of detections, labels and classes equal, boxes within 0.5 px, scores 1e-4."""
    assert len(c_records) == len(py_records)
    for c, py in zip(c_records, py_records):
        assert (c["frame"], c["width"], c["height"]) == (py["frame"], py["width"], py["height"])
        assert len(c["detections"]) == len(py["detections"]), f"frame {c['frame']}"
        for a, b in zip(c["detections"], py["detections"]):
            assert (a["label"], a["class"]) == (b["label"], b["class"])
            assert np.abs(np.subtract(a["box"], b["box"])).max() <= BOX_PX
            assert abs(a["score"] - b["score"]) <= SCORE


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cli_matches_python_detector(c_build, assets, val_frames, precision):
    have = {a.precision.value for a in load_bundle(assets.bundle, verify=False).artifacts}
    assert precision in have, f"the assets bundle has no openvino/{precision}"
    result = run_cli(c_build.cli, "--model", assets.bundle, "--stdin-raw", "128x128", "--precision", precision,
                     "--threads", 1, "--min-score", 0, input=val_frames.tobytes())  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    c_records = jsonl(result.stdout)
    py_records = python_records(assets.bundle, val_frames, precision, 0.0)
    assert sum(len(r["detections"]) for r in py_records) > 100  # a real model with real detections
    assert_close(c_records, py_records)
    # the same engine, settings and input give the same numbers: the records are equal, rounding included
    assert without_timestamps(c_records) == without_timestamps(py_records)


@pytest.mark.slow  # the frame-in export costs ~15 s; CI runs frame-size checks on the synthetic (frame-in) bundle
def test_frame_in_bundle_takes_the_camera_frames_as_they_are(c_build, frame_in_bundle, assets, val_images):
    """A frame-in bundle (export --frame-size 160x120) on the val images' own 160x120 frames: the C CLI's records
    equal the Python Detector's; the regular bundle refuses them and says which export takes them."""
    result = run_cli(c_build.cli, "--model", frame_in_bundle, "--stdin-raw", "160x120", "--threads", 1, "--min-score",
                     0, input=val_images.tobytes())  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    c_records, py_records = jsonl(result.stdout), python_records(frame_in_bundle, val_images, "fp32", 0.0)
    assert sum(len(r["detections"]) for r in c_records) > 100
    assert_close(c_records, py_records)
    assert without_timestamps(c_records) == without_timestamps(py_records)
    regular = run_cli(c_build.cli, "--model", assets.bundle, "--stdin-raw", "160x120", input=val_images.tobytes())
    assert regular.returncode == 2 and regular.stdout == b""
    assert b"frame is 160x120 but the bundle takes 128x128 frames; export with --frame-size 160x120" in regular.stderr


def test_cli_jsonl_equals_lighthead_edge_run(c_build, assets, val_frames):
    """The default --min-score (0.3 in both) and every field but the timestamp, against the Python CLI."""
    frames = val_frames[:6]
    command = [sys.executable, "-m", "lighthead_edge.cli", "run", "--model", str(assets.bundle), "--stdin-raw",
               "128x128", "--jsonl", "-", "--no-drop", "--threads", "1", "--min-score", "0.1",
               "--stats-every", "0"]  # fmt: skip
    python = subprocess.run(command, input=frames.tobytes(), capture_output=True, timeout=120)
    assert python.returncode == 0, python.stderr.decode()[-2000:]
    c = run_cli(c_build.cli, "--model", assets.bundle, "--stdin-raw", "128x128", "--threads", 1, "--min-score", 0.1,
                input=frames.tobytes())  # fmt: skip
    assert c.returncode == 0, c.stderr.decode()
    c_records, py_records = jsonl(c.stdout), jsonl(python.stdout)
    assert len(c_records) == 6 and sum(len(r["detections"]) for r in c_records) > 0
    assert_close(c_records, py_records)
    assert without_timestamps(c_records) == without_timestamps(py_records)
    assert all(abs(r["timestamp"] - p["timestamp"]) < 120 for r, p in zip(c_records, py_records))  # Unix time


def test_library_padded_rows_give_the_same_detections(c_lib, assets, val_frames):
    """stride > width * 3 (a copy into a packed frame) and stride == width * 3 (zero-copy) agree exactly."""
    detector = CDetector(c_lib, assets.bundle, precision="fp32", threads=1)
    try:
        assert (detector.width, detector.height) == (128, 128)
        for frame in val_frames[:4]:
            padded = np.full((128, 128 * 3 + 40), 77, np.uint8)
            padded[:, : 128 * 3] = frame.reshape(128, -1)
            packed = detector.detect(frame)
            assert len(packed) > 0
            assert detector.detect(padded, stride=128 * 3 + 40, width=128, height=128) == packed
            assert detector.detect(frame) == packed  # zero-copy again after the copying path
    finally:
        detector.close()


def test_library_accessors(c_lib, fake_bundle):
    detector = CDetector(c_lib, fake_bundle, precision="fp16", threads=1)
    try:
        assert (detector.width, detector.height) == (FAKE_SIZE[1], FAKE_SIZE[0])
        assert c_lib.lh_detector_class_count(detector.handle) == 3
        names = [c_lib.lh_detector_class_name(detector.handle, i) for i in range(0, 5)]
        assert names == [None, b"cat", b"dog", b"bird", None]
        assert c_lib.lh_detector_precision(detector.handle) == b"fp16"
        assert c_lib.lh_version() == b"0.1.0"
        assert c_lib.lh_status_name(2) == b"LH_ERR_BUNDLE"
    finally:
        detector.close()
    default = CDetector(c_lib, fake_bundle, device=None, threads=0)  # NULL device: CPU; no precision: fp32
    try:
        assert c_lib.lh_detector_precision(default.handle) == b"fp32"
    finally:
        default.close()


@pytest.mark.parametrize("min_score", [0.0, 0.3, 0.5])
def test_fake_bundle_edge_cases_match_python(c_build, fake_bundle, min_score):
    """Boxes clipped to the frame, labels 0 and C + 1 named by their number, rows past num_detections ignored,
    --min-score applied as Python does (score >= min_score), on frames with 0..8 (of 8) detections."""
    frames = np.stack([fake_frame(n, seed=n) for n in (0, 1, 3, 8, 200)])
    h, w = FAKE_SIZE
    result = run_cli(c_build.cli, "--model", fake_bundle, "--stdin-raw", f"{w}x{h}", "--min-score", min_score,
                     input=frames.tobytes())  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    c_records = jsonl(result.stdout)
    py_records = python_records(fake_bundle, frames, "fp32", min_score)
    assert without_timestamps(c_records) == without_timestamps(py_records)
    if min_score == 0.0:
        counts = [len(r["detections"]) for r in c_records]
        assert counts == [0, 1, 3, 8, 8]
        found = [d for r in c_records for d in r["detections"]]
        assert {"0", "4"} & {d["class"] for d in found}  # a label outside 1..3 is named by its number
        boxes = np.array([d["box"] for d in found])
        assert boxes.min() == 0.0 and boxes[:, 0::2].max() == w and boxes[:, 1::2].max() == h  # clipped


def test_library_applies_min_score(c_lib, fake_bundle):
    """lh_options.min_score keeps score >= min_score, like the CLI and Python."""
    frame = fake_frame(8, seed=3)
    everything = CDetector(c_lib, fake_bundle, min_score=0.0)
    some = CDetector(c_lib, fake_bundle, min_score=0.5)
    try:
        all_dets, kept = everything.detect(frame), some.detect(frame)
        assert len(all_dets) == 8
        assert kept == [d for d in all_dets if d[4] >= 0.5]
    finally:
        everything.close()
        some.close()
