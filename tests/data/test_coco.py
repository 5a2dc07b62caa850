"""The torch-free COCO json reader (validation messages, images and labels, image paths), CocoDetection targets and
collate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lighthead_edge.data.coco import CocoDetection, collate
from lighthead_edge.data.cocojson import coco_images, image_paths, load_coco
from lighthead_edge.errors import DataError


def _write_image(path: Path, h: int, w: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _coco() -> dict:
    """Two images (100x200 and 50x50), categories with unsorted, non-contiguous ids, one crowd and one thin box."""
    return {
        "images": [
            {"id": 10, "file_name": "imgs/a.png", "height": 100, "width": 200},
            {"id": 11, "file_name": "imgs/b.png", "height": 50, "width": 50},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [10, 20, 30, 40], "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [100, 0, 50, 50]},
            {"id": 3, "image_id": 10, "category_id": 3, "bbox": [0, 0, 200, 100], "iscrowd": 1},
            {"id": 4, "image_id": 10, "category_id": 7, "bbox": [5, 5, 0.5, 20]},
        ],
        "categories": [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}],
    }


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    _write_image(tmp_path / "imgs" / "a.png", 100, 200)
    _write_image(tmp_path / "imgs" / "b.png", 50, 50)
    (tmp_path / "ann.json").write_text(json.dumps(_coco()))
    return tmp_path


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "ann.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _ann(**changes: object) -> dict:
    return {"id": 5, "image_id": 10, "category_id": 7, "bbox": [1, 2, 3, 4], **changes}


def _broken(**changes: object) -> dict:
    data = _coco()
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", r"ann\.json is not valid JSON"),
        ([1, 2], r"ann\.json is not a COCO detection file"),
        ({"images": [], "categories": []}, r"ann\.json is not a COCO detection file: it has no 'annotations' list"),
        (_broken(images=[]), r"ann\.json lists no images"),
        (_broken(categories=[]), r"lists no categories"),
        (_broken(annotations=[{"id": 5, "image_id": 10, "category_id": 7, "bbox": [1, 2, 3]}]), r"'bbox' of 4 finite"),
        (_broken(annotations=[_ann(bbox=[1, 2, float("nan"), 4])]), r"annotation 5 needs a 'bbox' of 4 finite numbers"),
        (_broken(annotations=[_ann(bbox=[1, 2, 3, float("inf")])]), r"'bbox' of 4 finite numbers"),
        (_broken(annotations=[_ann(bbox=[1, 2, 3, -4])]), r"annotation 5 has bbox \[1, 2, 3, -4\]: width and height"),
        (_broken(annotations=[_ann(bbox=[1e308, 2, 3, 4])]), r"within 1e\+06 pixels"),
        (_broken(annotations=[_ann(bbox=[1, 2, 3, True])]), r"'bbox' of 4 finite numbers"),
        (_broken(annotations=[_ann(id=None)]), r"annotation .* needs an integer 'id'"),
        (_broken(annotations=[{"image_id": 10, "category_id": 7, "bbox": [1, 2, 3, 4]}]), r"needs an integer 'id'"),
        (_broken(annotations=[_ann(id="5")]), r"needs an integer 'id'"),
        (_broken(annotations=[_ann(id=True)]), r"needs an integer 'id'"),
        (_broken(annotations=[_ann(), _ann()]), r"annotation id 5 appears twice"),
        (_broken(annotations=[_ann(category_id=True)]), r"annotation 5 refers to unknown category_id True"),
        (_broken(annotations=[_ann(image_id=[10])]), r"annotation 5 refers to unknown image_id \[10\]"),
        (_broken(annotations=[_ann(area=-1)]), r"annotation 5 has area -1"),
        (_broken(annotations=[_ann(iscrowd=2)]), r"annotation 5 has iscrowd 2"),
        (_broken(images=[{"id": True, "file_name": "a"}]), r"needs an integer 'id'"),
        (_broken(annotations=[{"id": 5, "image_id": 99, "category_id": 7, "bbox": [1, 2, 3, 4]}]), "image_id 99"),
        (_broken(annotations=[{"id": 5, "image_id": 10, "category_id": 1, "bbox": [1, 2, 3, 4]}]), "category_id 1"),
        (_broken(images=[{"id": 1}]), r"needs an integer 'id' and a string 'file_name'"),
        (_broken(images=[{"id": 1, "file_name": "a"}, {"id": 1, "file_name": "b"}]), "image id 1 appears twice"),
    ],
)
def test_load_coco_errors(tmp_path, data, message):
    with pytest.raises(DataError, match=message):
        load_coco(_write(tmp_path, data))


def test_load_coco_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"annotation file .*missing\.json not found"):
        load_coco(tmp_path / "missing.json")


def test_coco_images_labels_and_paths(dataset_dir):
    """The images and label map every bundle evaluation uses, the same as the torch dataset's."""
    json_path = dataset_dir / "ann.json"
    images, label_to_cat_id = coco_images(json_path, ["three", "seven"])
    assert [im["id"] for im in images] == [10, 11] and label_to_cat_id == {1: 3, 2: 7}
    assert label_to_cat_id == CocoDetection(json_path).label_to_cat_id
    assert image_paths(json_path) == [dataset_dir / "imgs" / "a.png", dataset_dir / "imgs" / "b.png"]
    with pytest.raises(DataError, match=r"has classes \['three', 'seven'\], the bundle has \['seven', 'three'\]"):
        coco_images(json_path, ["seven", "three"])
    with pytest.raises(DataError, match="lists no images"):  # validated like the training data
        coco_images(_write(dataset_dir, _broken(images=[])))


def test_the_reader_and_the_data_package_need_no_torch(dataset_dir):
    code = ("import sys; sys.modules['torch'] = None; from lighthead_edge.data import load_coco; "
            "from lighthead_edge.data.cocojson import coco_images; "
            f"print(len(load_coco({str(dataset_dir / 'ann.json')!r})['images']))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "2", proc.stderr


def test_missing_image_files_are_counted(dataset_dir):
    (dataset_dir / "imgs" / "b.png").unlink()
    with pytest.raises(DataError, match=r"1 of 2 images listed in .*ann\.json are missing .*\(first: imgs/b\.png\)"):
        CocoDetection(dataset_dir / "ann.json")


def test_undecodable_image_names_the_file(dataset_dir):
    (dataset_dir / "imgs" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # a PNG signature, then junk
    ds = CocoDetection(dataset_dir / "ann.json", input_size=(64, 64))
    with pytest.raises(DataError, match=r"a\.png can't be decoded"):
        ds[0]
    with pytest.raises(DataError, match=r"a\.png can't be decoded"):
        ds.decode_all()


@pytest.mark.parametrize(("data", "match"), [(b"", r"a\.png is empty"), (b"\x89PNG garbage", "no known format")])
def test_empty_or_foreign_image_refused_when_loaded(dataset_dir, data, match):
    (dataset_dir / "imgs" / "a.png").write_bytes(data)
    with pytest.raises(DataError, match=match):
        CocoDetection(dataset_dir / "ann.json", input_size=(64, 64))


def test_labels_classes_and_targets(dataset_dir):
    ds = CocoDetection(dataset_dir / "ann.json", input_size=(64, 96))
    assert ds.class_names == ["three", "seven"]  # sorted by category id
    assert ds.label_to_cat_id == {1: 3, 2: 7}
    assert ds.image_ids == [10, 11] and len(ds) == 2 and ds.coco_path == dataset_dir / "ann.json"

    image, target = ds[0]
    assert image.shape == (3, 64, 96) and image.dtype == torch.float32
    assert target["image_id"] == 10 and target["orig_size"] == (100, 200)
    assert target["scale"] == pytest.approx(0.48)  # min(64 / 100, 96 / 200)
    assert target["labels"].tolist() == [2, 1]  # crowd and the 0.5-pixel-wide box are left out
    expected = np.array([[10, 20, 40, 60], [100, 0, 150, 50]], np.float32) * 0.48
    np.testing.assert_allclose(target["boxes"].numpy(), expected, rtol=1e-6)
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64


def test_image_without_annotations(dataset_dir):
    _, target = CocoDetection(dataset_dir / "ann.json", input_size=(64, 64))[1]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)


def test_train_flip_and_explicit_image_root(dataset_dir, tmp_path):
    moved = dataset_dir / "ann_elsewhere.json"
    (dataset_dir / "ann.json").rename(moved)
    ds = CocoDetection(moved, image_root=dataset_dir, input_size=(64, 96), train=True, hflip_prob=1.0)
    image, target = ds[0]
    x = np.array([[10, 40], [100, 150]], np.float32)
    np.testing.assert_allclose(target["boxes"][:, [0, 2]].numpy(), (200 - x[:, ::-1]) * 0.48, rtol=1e-6)
    # the padding stays at the bottom/right after a flip
    assert (image[:, 48:, :] == torch.tensor([124.0, 116.0, 104.0])[:, None, None]).all()


def test_collate(dataset_dir):
    ds = CocoDetection(dataset_dir / "ann.json", input_size=(64, 64))
    images, targets = collate([ds[0], ds[1]])
    assert images.shape == (2, 3, 64, 64) and [t["image_id"] for t in targets] == [10, 11]


def test_train_decodes_every_training_image_before_writing_a_model(dataset_dir):
    """A header that looks like PNG over junk passes the cheap load-time check; training decodes the whole set first,
    so the image is named and no model is written (it used to train on the rest and save)."""
    from lighthead_edge.config import ModelConfig, TrainConfig
    from lighthead_edge.train import train

    (dataset_dir / "imgs" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = dataset_dir / "model.pt"
    with pytest.raises(DataError, match=r"ann\.json: image .*b\.png can't be decoded"):
        train(train_json=dataset_dir / "ann.json", val_json=None, out=out,
              model_config=ModelConfig(backbone="tiny", input_size=(64, 64)),
              train_config=TrainConfig(iters=1, batch_size=1, warmup_iters=0, threads=1))  # fmt: skip
    assert not list(dataset_dir.glob("model*"))
