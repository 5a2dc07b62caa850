"""letterbox / to_model_input / hflip / scale_boxes: shapes, padding, and box round trips."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lighthead_edge.config import ModelConfig
from lighthead_edge.data.transforms import PAD_BGR, hflip, letterbox, read_image, scale_boxes, to_model_input
from lighthead_edge.errors import DataError


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("hw", "size", "scale", "new_hw"),
    [
        ((100, 200), (128, 128), 0.64, (64, 128)),  # landscape: pad the bottom
        ((300, 100), (96, 160), 0.32, (96, 32)),  # portrait: pad the right
        ((40, 50), (128, 96), 1.92, (77, 96)),  # upscaling, rounded height
    ],
)
def test_letterbox_shape_scale_and_padding(hw, size, scale, new_hw):
    out, s = letterbox(_noise(*hw), size)
    assert out.shape == (*size, 3) and out.dtype == np.uint8
    assert s == pytest.approx(scale)
    nh, nw = new_hw
    pad = np.concatenate([out[nh:].reshape(-1, 3), out[:, nw:].reshape(-1, 3)])
    assert len(pad) > 0 and (pad == PAD_BGR).all()
    assert not (out[:nh, :nw] == PAD_BGR).all(axis=2).all()  # the image itself is at the top-left


def test_letterbox_identity_at_scale_one():
    image = _noise(64, 80)
    out, s = letterbox(image, (64, 96))
    assert s == 1.0
    np.testing.assert_array_equal(out[:, :80], image)


def test_padding_normalises_to_about_zero():
    cfg = ModelConfig()
    out, _ = letterbox(_noise(32, 64), (64, 64))
    rgb = to_model_input(out)[:, -1, -1]
    normalised = (rgb - np.array(cfg.pixel_mean)) / np.array(cfg.pixel_std)
    assert np.abs(normalised).max() < 0.02


def test_letterbox_rejects_non_bgr():
    with pytest.raises(DataError, match=r"uint8 \[H, W, 3\]"):
        letterbox(np.zeros((10, 10), np.uint8), (64, 64))


def test_to_model_input_is_chw_rgb_float():
    image = np.zeros((4, 6, 3), np.uint8)
    image[..., 0] = 255  # blue in BGR
    x = to_model_input(image)
    assert x.shape == (3, 4, 6) and x.dtype == np.float32 and x.flags.c_contiguous
    assert (x[2] == 255).all() and (x[:2] == 0).all()


def test_box_round_trip_through_letterbox():
    orig_hw = (300, 500)
    boxes = np.array([[10, 20, 110, 220], [0, 0, 500, 300], [490.5, 1, 500, 2]], np.float32)
    _, s = letterbox(_noise(*orig_hw), (256, 256))
    back = scale_boxes(boxes * s, s, orig_hw)
    np.testing.assert_allclose(back, boxes, atol=1e-3)


def test_scale_boxes_clips_to_image():
    out = scale_boxes(np.array([[-5, -5, 80, 90]], np.float32), 0.5, (100, 120))
    np.testing.assert_allclose(out, [[0, 0, 120, 100]])


def test_hflip_moves_pixels_and_boxes_together():
    image = np.zeros((20, 30, 3), np.uint8)
    image[5:9, 2:7] = 255  # the pixels of box (2, 5, 7, 9)
    flipped, boxes = hflip(image, np.array([[2, 5, 7, 9]], np.float32))
    np.testing.assert_allclose(boxes, [[23, 5, 28, 9]])
    x0, y0, x1, y1 = boxes[0].astype(int)
    assert (flipped[y0:y1, x0:x1] == 255).all() and flipped.sum() == image.sum()
    again, back = hflip(flipped, boxes)
    np.testing.assert_array_equal(again, image)
    np.testing.assert_allclose(back, [[2, 5, 7, 9]])


def test_hflip_without_boxes():
    _, boxes = hflip(_noise(8, 8), np.zeros((0, 4), np.float32))
    assert boxes.shape == (0, 4)


def test_read_image_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_image(tmp_path / "nope.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"bad\.jpg can't be decoded"):
        read_image(bad)


def test_transforms_and_package_import_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import lighthead_edge.data as d\n"
        "from lighthead_edge.data.transforms import letterbox\n"
        "d.letterbox, d.render_scene, d.prepare_neon\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
