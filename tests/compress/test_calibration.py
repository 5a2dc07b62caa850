"""Calibration sets: folder / COCO json / video sources, the runtime's preprocessing, bad images, selection."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lighthead_edge.compress.calibration import build_calibration_set, k_center
from lighthead_edge.data.transforms import letterbox
from lighthead_edge.errors import DataError

SIZE = (64, 96)  # (H, W) of the model input: not square, so the letterbox is exercised


def _image(seed: int, hw: tuple[int, int] = (48, 80)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Six readable images (one in a subfolder) and two bad ones (garbage bytes, an empty file)."""
    (tmp_path / "sub").mkdir()
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"im{i}.png"), _image(i))
    cv2.imwrite(str(tmp_path / "sub" / "im5.jpg"), _image(5))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    return tmp_path


def test_folder_preprocessing_is_the_runtimes(folder: Path) -> None:
    calib = build_calibration_set(folder, input_size=SIZE, size=100)
    assert len(calib) == 6 and calib.candidates == 8
    assert sorted(calib.skipped) == ["broken.jpg", "empty.png"]
    assert "2 unreadable skipped" in calib.summary()
    first = cv2.imread(str(folder / "im0.png"))
    expected = letterbox(first, SIZE)[0][None]  # what Detector.preprocess feeds the graph
    assert calib.inputs[0].shape == (1, *SIZE, 3) and calib.inputs[0].dtype == np.uint8
    np.testing.assert_array_equal(calib.inputs[calib.names.index("im0.png")], expected)


def test_size_is_a_uniform_subset(folder: Path) -> None:
    calib = build_calibration_set(folder, input_size=SIZE, size=3)
    assert len(calib) + len(calib.skipped) == 3  # evenly spaced picks; a bad one is counted, not replaced


def test_coco_json_source(synth_set: dict) -> None:
    calib = build_calibration_set(synth_set["val"], input_size=SIZE, size=4)
    assert len(calib) == 4 and not calib.skipped
    assert calib.inputs[0].shape == (1, *SIZE, 3)


def test_video_source(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 48))
    for i in range(20):
        writer.write(np.full((48, 80, 3), 10 * i, dtype=np.uint8))
    writer.release()
    calib = build_calibration_set(path, input_size=SIZE, size=5)
    assert len(calib) == 5 and calib.names == ["frame 0", "frame 5", "frame 10", "frame 14", "frame 19"]
    means = [float(x[0, :40, :70].mean()) for x in calib.inputs]
    assert means == sorted(means) and means[-1] > means[0] + 100  # frames from across the clip, in order


def test_diverse_selection_keeps_rare_scenes(tmp_path: Path) -> None:
    for i in range(12):  # a static camera: twelve near-identical grey frames ...
        cv2.imwrite(str(tmp_path / f"a{i:02d}.png"), np.full((48, 80, 3), 120 + i % 2, dtype=np.uint8))
    red = np.zeros((48, 80, 3), dtype=np.uint8)
    red[..., 2] = 250
    cv2.imwrite(str(tmp_path / "b_red.png"), red)
    cv2.imwrite(str(tmp_path / "c_dark.png"), np.zeros((48, 80, 3), dtype=np.uint8))  # ... and two rare scenes
    calib = build_calibration_set(tmp_path, input_size=SIZE, size=3, selection="diverse")
    assert {"b_red.png", "c_dark.png"} <= set(calib.names)
    assert k_center(np.eye(4), 2) == sorted(k_center(np.eye(4), 2))


@pytest.mark.parametrize("make", ["empty_folder", "only_bad", "missing", "wrong_kind"])
def test_unusable_sources_are_one_line_errors(tmp_path: Path, make: str) -> None:
    source = tmp_path / "calib"
    if make in ("empty_folder", "only_bad"):
        source.mkdir()
    if make == "only_bad":
        (source / "x.jpg").write_bytes(b"junk")
    if make == "wrong_kind":
        source = tmp_path / "calib.csv"
        source.write_text("a,b\n")
    with pytest.raises(DataError) as info:
        build_calibration_set(source, input_size=SIZE)
    assert "\n" not in str(info.value)
    if make == "only_bad":
        assert "1 unreadable" in str(info.value)
