"""COCO-format detection datasets: validation of the annotation file and a torch ``Dataset`` over it.

Labels are contiguous: ``1..C`` in the order of the categories sorted by id, ``0`` is background.
``label_to_cat_id`` maps them back for COCO evaluation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lighthead_edge.data.transforms import adjust_colour, hflip, letterbox, read_image, rot90, to_model_input, vflip
from lighthead_edge.errors import DataError


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"annotation file {path} not found; check the path")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"annotation file {path} is not valid JSON ({e}); it must be a COCO detection file") from e


def _check_records(path: Path, data: dict) -> None:
    """Raise ``DataError`` on the first record that a detection dataset can't use."""
    not_coco = f"{path} is not a COCO detection file:"
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{not_coco} it has no {key!r} list at the top level")
    if not data["images"]:
        raise DataError(f"{path} lists no images; a dataset needs at least one")
    if not data["categories"]:
        raise DataError(f"{path} lists no categories; add at least one {{'id': 1, 'name': ...}}")
    cat_ids, image_ids = set(), set()
    for c in data["categories"]:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or not isinstance(c.get("name"), str):
            raise DataError(f"{not_coco} category {c!r} needs an integer 'id' and a string 'name'")
        if c["id"] in cat_ids:
            raise DataError(f"{path}: category id {c['id']} appears twice; category ids must be unique")
        cat_ids.add(c["id"])
    for im in data["images"]:
        if not isinstance(im, dict) or not isinstance(im.get("id"), int) or not isinstance(im.get("file_name"), str):
            raise DataError(f"{not_coco} image {im!r} needs an integer 'id' and a string 'file_name'")
        if im["id"] in image_ids:
            raise DataError(f"{path}: image id {im['id']} appears twice; image ids must be unique")
        image_ids.add(im["id"])
    for a in data["annotations"]:
        bbox = a.get("bbox") if isinstance(a, dict) else None
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise DataError(f"{not_coco} annotation {a!r} needs a 'bbox' of 4 numbers [x, y, w, h]")
        if a.get("image_id") not in image_ids:
            raise DataError(f"{path}: annotation {a.get('id')} refers to unknown image_id {a.get('image_id')!r}")
        if a.get("category_id") not in cat_ids:
            raise DataError(f"{path}: annotation {a.get('id')} refers to unknown category_id {a.get('category_id')!r}")


def load_coco(path: str | os.PathLike) -> dict:
    """Load and validate a COCO detection annotation file; raise ``DataError`` naming the file if it can't be used.

    Checks: the file exists and is JSON; it has ``images``, ``annotations`` and ``categories`` lists; at least one
    image and one category; unique integer ids; every annotation has a numeric ``bbox [x, y, w, h]`` and refers to a
    known image and category. Image files are not touched (see :class:`CocoDetection`).
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a COCO detection file: the top level must be an object with 'images' etc.")
    _check_records(path, data)
    return data


def _check_files_exist(coco_path: Path, image_root: Path, file_names: Sequence[str]) -> None:
    missing = [name for name in file_names if not (image_root / name).is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} of {len(file_names)} images listed in {coco_path} are missing under {image_root} "
            f"(first: {missing[0]}); pass the right image root"
        )


AUGMENTATIONS = ("flip", "aerial")


class CocoDetection(Dataset):
    """A COCO detection file as ``(image, target)`` pairs, letterboxed to the model's input size.

    Args:
        json_path: the COCO annotation file.
        image_root: the folder ``file_name`` is relative to; the JSON file's folder by default.
        input_size: ``(H, W)`` of the model input.
        train: apply random augmentation (``augment``).
        augment: ``"flip"``: horizontal flips with ``hflip_prob``; ``"aerial"``: for nadir imagery, where up has no
            meaning, also vertical flips, quarter turns and brightness/contrast jitter (+-20%).

    ``__getitem__`` returns ``image (FloatTensor[3, H, W])``, RGB in 0..255 with the padding at the mean colour, and
    ``target``: ``boxes (FloatTensor[N, 4])`` xyxy in input pixels, ``labels (LongTensor[N])`` in ``1..C``,
    ``image_id`` (int), ``scale`` (float, input pixels per original pixel) and ``orig_size`` ``(h, w)``.
    Crowd annotations and boxes narrower or shorter than 1 pixel are left out; images without boxes give ``N = 0``.
    """

    def __init__(
        self,
        json_path: str | os.PathLike,
        image_root: str | os.PathLike | None = None,
        input_size: tuple[int, int] = (512, 512),
        train: bool = False,
        hflip_prob: float = 0.5,
        augment: str = "flip",
    ) -> None:
        if augment not in AUGMENTATIONS:
            raise DataError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {augment!r}")
        self.augment = augment
        self.coco_path = Path(json_path)
        self.coco = load_coco(self.coco_path)
        self.image_root = Path(image_root) if image_root is not None else self.coco_path.parent
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.train = train
        self.hflip_prob = float(hflip_prob)

        categories = sorted(self.coco["categories"], key=lambda c: c["id"])
        self.class_names: list[str] = [c["name"] for c in categories]
        self.label_to_cat_id: dict[int, int] = {i + 1: c["id"] for i, c in enumerate(categories)}
        cat_id_to_label = {cat: label for label, cat in self.label_to_cat_id.items()}

        images = self.coco["images"]
        self.image_ids: list[int] = [im["id"] for im in images]
        self._file_names: list[str] = [im["file_name"] for im in images]
        _check_files_exist(self.coco_path, self.image_root, self._file_names)

        per_image: dict[int, list[tuple[list[float], int]]] = {i: [] for i in self.image_ids}
        for a in self.coco["annotations"]:
            x, y, w, h = a["bbox"]
            if a.get("iscrowd", 0) or w < 1 or h < 1:
                continue
            per_image[a["image_id"]].append(([x, y, x + w, y + h], cat_id_to_label[a["category_id"]]))
        self._boxes = [np.array([b for b, _ in per_image[i]], np.float32).reshape(-1, 4) for i in self.image_ids]
        self._labels = [np.array([c for _, c in per_image[i]], np.int64) for i in self.image_ids]

    @property
    def num_classes(self) -> int:
        """Foreground classes (``C``)."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, index: int) -> Path:
        return self.image_root / self._file_names[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image = read_image(self.image_path(index))
        h, w = image.shape[:2]
        boxes = self._boxes[index].copy()
        # COCO boxes may poke past the border by rounding; clip, then drop any that collapse.
        np.clip(boxes[:, 0::2], 0, w, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, h, out=boxes[:, 1::2])
        keep = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
        boxes, labels = boxes[keep], self._labels[index][keep]
        if self.train:
            image, boxes = self._augment(image, boxes)
            h, w = image.shape[:2]
        image, scale = letterbox(image, self.input_size)
        target = {
            "boxes": torch.from_numpy(boxes * np.float32(scale)),
            "labels": torch.from_numpy(labels),
            "image_id": self.image_ids[index],
            "scale": scale,
            "orig_size": (h, w),
        }
        return torch.from_numpy(to_model_input(image)), target

    def _augment(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # torch's RNG, not numpy's: the training loop seeds torch, and DataLoader seeds it per worker.
        r = torch.rand(5).tolist()
        if r[0] < self.hflip_prob:
            image, boxes = hflip(image, boxes)
        if self.augment == "aerial":
            if r[1] < 0.5:
                image, boxes = vflip(image, boxes)
            image, boxes = rot90(image, boxes, int(r[2] * 4))
            image = adjust_colour(image, 0.8 + 0.4 * r[3], 0.8 + 0.4 * r[4])
        return image, boxes


def collate(batch: Sequence[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Stack ``B`` samples into ``images (Tensor[B, 3, H, W])`` and a list of ``B`` target dicts."""
    images = torch.stack([image for image, _ in batch])
    return images, [target for _, target in batch]
