"""Synthetic scenes: determinism, boxes that are the tight boxes of visible, contrasting shapes, and the COCO files."""

from __future__ import annotations

import json
from collections import Counter

import cv2
import numpy as np
import pytest

from lighthead_edge.data.coco import load_coco
from lighthead_edge.data.synth import CLASSES, generate_dataset, render_scene
from lighthead_edge.errors import DataError

SIZE = (128, 160)


@pytest.fixture(scope="module")
def scenes():
    return [render_scene(i, size=SIZE) for i in range(40)]


def test_render_is_deterministic_and_splits_differ():
    a, b = render_scene(3, seed=5, size=SIZE), render_scene(3, seed=5, size=SIZE)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.image, render_scene(3, seed=5, split="val", size=SIZE).image)
    assert not np.array_equal(a.image, render_scene(3, seed=6, size=SIZE).image)


def test_boxes_are_tight_boxes_of_visible_masks(scenes):
    for s in scenes:
        assert s.image.shape == (*SIZE, 3) and s.image.dtype == np.uint8
        assert len(s.boxes) == len(s.labels) == len(s.masks)
        for box, mask in zip(s.boxes, s.masks, strict=True):
            ys, xs = np.nonzero(mask)
            np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            assert box[2] <= SIZE[1] and box[3] <= SIZE[0]
        if len(s.masks) > 1:  # visible masks never overlap
            assert s.masks.sum(axis=0).max() == 1


def test_shapes_stand_out_from_their_surroundings(scenes):
    contrasts = []
    for s in scenes:
        image, taken = s.image.astype(np.float32), s.masks.any(axis=0)
        for mask in s.masks:
            ring = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~taken
            if ring.sum() >= 10:
                contrasts.append(np.linalg.norm(image[mask].mean(axis=0) - image[ring].mean(axis=0)))
    assert len(contrasts) > 100
    assert min(contrasts) > 25 and np.median(contrasts) > 80


def test_class_and_size_coverage(scenes):
    counts = Counter(int(label) for s in scenes for label in s.labels)
    assert set(counts) == set(range(len(CLASSES))) and min(counts.values()) >= 20
    per_image = [len(s.labels) for s in scenes]
    assert min(per_image) >= 1 and max(per_image) <= 8 and np.mean(per_image) > 2.5
    sides = np.concatenate([np.maximum(s.boxes[:, 2] - s.boxes[:, 0], s.boxes[:, 3] - s.boxes[:, 1]) for s in scenes])
    assert sides.min() >= 8 and sides.max() > 0.3 * min(SIZE) and sides.max() <= 0.45 * min(SIZE) + 2


def test_generate_dataset_writes_valid_deterministic_coco(tmp_path):
    kwargs = {"size": (64, 96), "seed": 1, "progress": False}
    out = generate_dataset(tmp_path / "a", 5, 3, **kwargs)
    again = generate_dataset(tmp_path / "b", 5, 3, **kwargs)
    assert out["classes"] == list(CLASSES)
    train, val = load_coco(out["train"]), load_coco(out["val"])
    assert [c["id"] for c in train["categories"]] == [1, 2, 3, 4]
    assert len(train["images"]) == 5 and len(val["images"]) == 3
    assert not {im["file_name"] for im in train["images"]} & {im["file_name"] for im in val["images"]}
    for im in train["images"] + val["images"]:
        assert cv2.imread(str(tmp_path / "a" / im["file_name"])).shape == (64, 96, 3)
    assert train == json.loads(open(again["train"]).read())
    assert (tmp_path / "a/images/val_000000.jpg").read_bytes() != (tmp_path / "a/images/train_000000.jpg").read_bytes()
    assert all(a["bbox"][2] >= 1 and a["bbox"][3] >= 1 and a["iscrowd"] == 0 for a in train["annotations"])


@pytest.mark.parametrize(("args", "message"), [((0, 1), "at least one"), ((1, 1, (32, 64)), "at least 64x64")])
def test_generate_dataset_rejects_bad_settings(tmp_path, args, message):
    num_train, num_val, *size = args
    with pytest.raises(DataError, match=message):
        generate_dataset(tmp_path, num_train, num_val, size=size[0] if size else (64, 64), progress=False)
