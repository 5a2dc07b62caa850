"""A COCO set as a fixed-size camera would see it: every image resized to one frame size, boxes scaled with it.

    json_path = framed_dataset("val.json", "val_640x480/", (480, 640))

What a frame-in bundle (``export --frame-size``) is measured on: its graph takes frames of exactly that size, and the
host-letterbox path gets the same frames, so the two are compared image for image (``scripts/bench_frame_in.py``).
Images are resized like a camera's scaler does (each axis to the frame, aspect not kept) and written losslessly (PNG).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import cv2

from lighthead_edge.data.cocojson import load_coco
from lighthead_edge.data.transforms import read_image
from lighthead_edge.errors import DataError


def framed_dataset(json_path: str | os.PathLike, out: str | os.PathLike, frame_size: tuple[int, int]) -> Path:
    """Write ``out/images/*.png`` (each image of ``json_path`` resized to ``frame_size`` (h, w)) and
    ``out/annotations.json`` with the boxes scaled to match -> the json's path. ``out`` must not hold files yet."""
    json_path, out = Path(json_path), Path(out)
    data = load_coco(json_path)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} is not empty; framed_dataset writes a new folder")
    (out / "images").mkdir(parents=True, exist_ok=True)
    fh, fw = frame_size
    framed = copy.deepcopy(data)
    factors: dict[int, tuple[float, float]] = {}
    for image in framed["images"]:
        frame = read_image(json_path.parent / image["file_name"])
        h, w = frame.shape[:2]
        name = f"images/{Path(image['file_name']).stem}.png"
        if not cv2.imwrite(str(out / name), cv2.resize(frame, (fw, fh), interpolation=cv2.INTER_LINEAR)):
            raise DataError(f"can't write {out / name}")
        factors[image["id"]] = (fw / w, fh / h)
        image.update(file_name=name, width=fw, height=fh)
    for ann in framed["annotations"]:
        sx, sy = factors[ann["image_id"]]
        x, y, bw, bh = ann["bbox"]
        ann["bbox"] = [x * sx, y * sy, bw * sx, bh * sy]
        ann["area"] = bw * sx * bh * sy
    target = out / "annotations.json"
    target.write_text(json.dumps(framed), encoding="utf-8")
    return target
