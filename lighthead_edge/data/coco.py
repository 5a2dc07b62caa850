"""A torch ``Dataset`` over a COCO-format detection file (read and validated by :mod:`.cocojson`).

Labels are contiguous: ``1..C`` in the order of the categories sorted by id, ``0`` is background.
``label_to_cat_id`` maps them back for COCO evaluation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lighthead_edge.data.cocojson import categories, load_coco
from lighthead_edge.data.transforms import (
    adjust_colour,
    check_image_file,
    hflip,
    letterbox,
    read_image,
    rot90,
    to_model_input,
    vflip,
)
from lighthead_edge.errors import DataError


def _check_files(coco_path: Path, image_root: Path, file_names: Sequence[str]) -> None:
    missing = [name for name in file_names if not (image_root / name).is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} of {len(file_names)} images listed in {coco_path} are missing under {image_root} "
            f"(first: {missing[0]}); pass the right image root"
        )
    for name in file_names:  # a stat and a few header bytes each: an empty or foreign file fails here, not mid-run
        try:
            check_image_file(image_root / name)
        except DataError as exc:
            raise DataError(f"{coco_path}: {exc}") from None


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

        self.class_names, self.label_to_cat_id = categories(self.coco)
        cat_id_to_label = {cat: label for label, cat in self.label_to_cat_id.items()}

        images = self.coco["images"]
        self.image_ids: list[int] = [im["id"] for im in images]
        self._file_names: list[str] = [im["file_name"] for im in images]
        _check_files(self.coco_path, self.image_root, self._file_names)

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

    def decode_all(self) -> None:
        """Decode every image once (``DataError`` naming the first that fails): a training or val set, read many
        times, is checked whole before a long run (and before any model is written), not in the middle of it."""
        for index in range(len(self)):
            try:
                read_image(self.image_path(index))
            except DataError as exc:
                raise DataError(f"{self.coco_path}: {exc}") from None

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
