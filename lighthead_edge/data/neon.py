"""The NEON tree-crown set (airborne RGB, Pascal-VOC boxes) from the MIT-licensed ``deepforest==2.1.0`` wheel, as COCO.

The wheel is only downloaded (``pip download --no-deps``) and read with ``zipfile``; deepforest is never installed or
imported (it pulls lightning, transformers and more). Train tiles come from the two large YELL crops; the two small
400x400 plots (OSBS_029 and SOAP_061) are kept whole for validation, so no evaluation pixel is ever trained on.

Those two plots are other sites (Florida, California) than the training crops (Yellowstone), and hold only 98 crowns,
so their AP moves by about a point between neighbouring epochs. ``holdout`` adds a second, in-domain split for
measurements that need a steadier figure (pruning, quantization): the bottom strip of each YELL crop is cut off
before tiling and written as ``holdout.json``, in tiles that partition it (no crown is counted twice).

Note:
    VOC boxes are 1-based and inclusive (``xmax`` = image width for a crown touching the right edge); they become
    continuous pixel-edge boxes as ``(xmin - 1, ymin - 1, xmax, ymax)``, the convention of ``transforms``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import cv2
import numpy as np

from lighthead_edge.data.cocojson import claim_dataset_folder
from lighthead_edge.errors import DataError

PACKAGE = "deepforest==2.1.0"
TRAIN_SCENES = ("2019_YELL_2_541000_4977000_image_crop", "2019_YELL_2_528000_4978000_image_crop2")
VAL_SCENES = ("OSBS_029", "SOAP_061")
CLASSES = ("Tree",)  # every VOC label (Tree, Dead, Alive, ...) is one crown class
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "lighthead-edge" / "downloads"
MIN_INSIDE = 0.5  # a crown is kept in a tile when at least this fraction of its box area lies inside
_WHEEL_GLOB = "deepforest-2.1.0-*.whl"
_OFFLINE_HINT = (
    f"download it where there is network with `pip download --no-deps {PACKAGE}` and pass the .whl with --wheel PATH"
)


def _download_wheel(cache_dir: Path, progress: bool) -> Path:
    """The deepforest wheel in ``cache_dir``, downloaded with pip unless one is already there."""
    found = sorted(cache_dir.glob(_WHEEL_GLOB))
    if found:
        return found[0]
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", PACKAGE, "-d", str(cache_dir)]
    if progress:
        print(f"neon: downloading {PACKAGE} (21 MB) into {cache_dir}", file=sys.stderr)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DataError(f"could not run pip to download {PACKAGE} ({e}); {_OFFLINE_HINT}") from e
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        reason = lines[-1] if lines else f"exit code {proc.returncode}"
        raise DataError(f"pip could not download {PACKAGE} ({reason}); {_OFFLINE_HINT}")
    found = sorted(cache_dir.glob(_WHEEL_GLOB))
    if not found:
        raise DataError(f"pip ran but left no {_WHEEL_GLOB} in {cache_dir}; {_OFFLINE_HINT}")
    return found[0]


def _read_member(wheel: zipfile.ZipFile, wheel_path: Path, name: str) -> bytes:
    try:
        return wheel.read(f"deepforest/data/{name}")
    except KeyError:
        raise DataError(
            f"{wheel_path} has no deepforest/data/{name}; is it the {PACKAGE} wheel? {_OFFLINE_HINT}"
        ) from None


def _parse_voc(xml_bytes: bytes, source: str, image_hw: tuple[int, int]) -> np.ndarray:
    """Boxes ``[N, 4]`` float32 xyxy (pixel edges, clipped to the image) of every object in a VOC file."""
    try:
        root = ET.fromstring(xml_bytes)
    except ET.ParseError as e:
        raise DataError(f"{source} is not valid VOC XML ({e}); {_OFFLINE_HINT}") from e
    h, w = image_hw
    boxes = []
    for obj in root.iter("object"):
        bnd = obj.find("bndbox")
        try:
            xmin, ymin, xmax, ymax = (float(bnd.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError) as e:
            raise DataError(f"{source} has an object without a numeric bndbox; {_OFFLINE_HINT}") from e
        boxes.append([max(xmin - 1, 0), max(ymin - 1, 0), min(xmax, w), min(ymax, h)])
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    return boxes[(boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)]


def _load_scene(wheel: zipfile.ZipFile, wheel_path: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    """``(image [H, W, 3] uint8 BGR, boxes [N, 4] float32 xyxy)`` of one scene in the wheel."""
    png = _read_member(wheel, wheel_path, f"{stem}.png")
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{wheel_path}: deepforest/data/{stem}.png can't be decoded; {_OFFLINE_HINT}")
    boxes = _parse_voc(_read_member(wheel, wheel_path, f"{stem}.xml"), f"{wheel_path}:{stem}.xml", image.shape[:2])
    return image, boxes


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Offsets of ``tile``-long windows every ``stride`` along ``length``; the last one flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def crop_boxes(boxes: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Boxes ``[N, 4]`` with at least ``MIN_INSIDE`` of their area in the window, clipped and in window coordinates."""
    clipped = boxes.copy()
    np.clip(clipped[:, 0::2], x0, x1, out=clipped[:, 0::2])
    np.clip(clipped[:, 1::2], y0, y1, out=clipped[:, 1::2])
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = (inside >= MIN_INSIDE * area) & (clipped[:, 2] - clipped[:, 0] >= 1) & (clipped[:, 3] - clipped[:, 1] >= 1)
    return clipped[keep] - np.array([x0, y0, x0, y0], np.float32)


class _CocoWriter:
    """Collects images (written as PNG under ``out_dir/images``) and their boxes into one COCO file."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def add(self, file_name: str, image: np.ndarray, boxes: np.ndarray, **extra: object) -> None:
        if not cv2.imwrite(str(self.out_dir / file_name), image):
            raise DataError(
                f"could not write {self.out_dir / file_name}; check that the folder is writable and not full"
            )
        image_id = len(self.images) + 1
        h, w = image.shape[:2]
        self.images.append({"id": image_id, "file_name": file_name, "height": h, "width": w, **extra})
        for x0, y0, x1, y1 in boxes.tolist():
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )

    def save(self, path: Path, description: str) -> str:
        categories = [{"id": i + 1, "name": name, "supercategory": "plant"} for i, name in enumerate(CLASSES)]
        coco = {
            "info": {"description": description, "url": "https://github.com/weecology/DeepForest (MIT)"},
            "licenses": [],
            "images": self.images,
            "annotations": self.annotations,
            "categories": categories,
        }
        with open(path, "w", encoding="utf-8") as f:
            json.dump(coco, f)
        return str(path)


def _write_tiles(
    writer: _CocoWriter,
    stem: str,
    image: np.ndarray,
    boxes: np.ndarray,
    tile: int,
    stride: int,
    *,
    prefix: str = "train",
    y_range: tuple[int, int] | None = None,
) -> None:
    """Add the ``tile x tile`` windows of one scene (rows ``y_range`` only) that hold at least one crown.

    With ``stride == tile`` the windows partition the rows, the last ones cut short at the edge instead of flush with
    it, so no crown lands in two tiles.
    """
    h, w = image.shape[:2]
    top, bottom = y_range or (0, h)

    def starts(length: int) -> list[int]:
        return list(range(0, length, tile)) if stride == tile else tile_starts(length, tile, stride)

    for y in (top + dy for dy in starts(bottom - top)):
        for x in starts(w):
            x1, y1 = min(x + tile, w), min(y + tile, bottom)
            kept = crop_boxes(boxes, x, y, x1, y1)
            if len(kept):
                crop = np.ascontiguousarray(image[y:y1, x:x1])
                writer.add(f"images/{prefix}_{stem}_y{y}_x{x}.png", crop, kept, source=stem, offset_xy=[x, y])


def prepare_neon(
    out_dir: str | os.PathLike,
    *,
    wheel: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    tile: int = 400,
    overlap: int = 100,
    holdout: float = 0.0,
    progress: bool = True,
) -> dict:
    """Write the NEON tree-crown set as COCO: ``out_dir/images/*.png``, ``out_dir/train.json``, ``out_dir/val.json``.

    Args:
        wheel: a local ``deepforest-2.1.0-py3-none-any.whl``; downloaded with pip into ``cache_dir`` when ``None``
            (an existing one there is reused).
        cache_dir: ``~/.cache/lighthead-edge/downloads`` by default.
        tile, overlap: train tiles are ``tile x tile`` windows every ``tile - overlap`` pixels, the last flush with
            the edge; crowns at least half inside are kept, clipped; tiles without crowns are skipped.
        holdout: when > 0, this fraction of each YELL crop's rows (the bottom strip) is held out of training and
            written as ``holdout.json``: ``tile x tile`` tiles that partition the strip. A crown across the cut goes
            to the side that holds at least half of it; no held-out pixel is ever in a training tile.

    Returns:
        ``{"train", "val"}`` (JSON paths), ``"classes": ["Tree"]``, ``"num_train_images"``, ``"num_train_boxes"``,
        ``"num_val_images"`` and ``"num_val_boxes"``; with ``holdout`` also ``"holdout"``, ``"num_holdout_images"``
        and ``"num_holdout_boxes"``.
    """
    if tile < 32 or not 0 <= overlap < tile:
        raise DataError(
            f"need tile >= 32 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}; pick a smaller overlap"
        )
    if not 0.0 <= holdout <= 0.5:
        raise DataError(f"need 0 <= holdout <= 0.5 (a fraction of each training crop's rows), got {holdout}")
    claim_dataset_folder(out_dir, "NEON tree crowns", ("train.json", "val.json", "holdout.json"))
    if wheel is None:
        wheel_path = _download_wheel(Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR, progress)
    else:
        wheel_path = Path(wheel)
        if not wheel_path.is_file():
            raise DataError(f"wheel {wheel_path} not found; {_OFFLINE_HINT}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    train, val, held = _CocoWriter(out), _CocoWriter(out), _CocoWriter(out)
    try:
        with zipfile.ZipFile(wheel_path) as zf:
            for stem in TRAIN_SCENES:
                image, boxes = _load_scene(zf, wheel_path, stem)
                cut = image.shape[0] - round(image.shape[0] * holdout)
                _write_tiles(train, stem, image, boxes, tile, tile - overlap, y_range=(0, cut))
                if cut < image.shape[0]:
                    _write_tiles(held, stem, image, boxes, tile, tile, prefix="holdout", y_range=(cut, image.shape[0]))
                if progress:
                    print(f"neon: {stem}: {len(train.images)} train tiles so far", file=sys.stderr)
            for stem in VAL_SCENES:
                val.add(f"images/val_{stem}.png", *_load_scene(zf, wheel_path, stem), source=stem, offset_xy=[0, 0])
    except zipfile.BadZipFile as e:
        raise DataError(f"{wheel_path} is not a valid wheel (zip) file ({e}); {_OFFLINE_HINT}") from e
    result = {
        "train": train.save(out / "train.json", f"NEON tree crowns, train tiles {tile}px / overlap {overlap}px"),
        "val": val.save(out / "val.json", "NEON tree crowns, val: OSBS_029 and SOAP_061, whole"),
        "classes": list(CLASSES),
        "num_train_images": len(train.images),
        "num_train_boxes": len(train.annotations),
        "num_val_images": len(val.images),
        "num_val_boxes": len(val.annotations),
    }
    if holdout > 0:
        if not held.annotations:
            raise DataError(f"the held-out strip (holdout={holdout}) holds no crowns; pass a larger --holdout")
        result["holdout"] = held.save(
            out / "holdout.json", f"NEON tree crowns, held out: the bottom {holdout:.0%} of each YELL crop, in tiles"
        )
        result["num_holdout_images"] = len(held.images)
        result["num_holdout_boxes"] = len(held.annotations)
    elif (out / "holdout.json").exists():
        (out / "holdout.json").unlink()  # a stale split from an earlier call would overlap this call's train tiles
    if progress:
        extra = f", {result['num_holdout_boxes']} held-out boxes" if holdout > 0 else ""
        print(
            f"neon: {result['num_train_images']} train tiles, {result['num_val_boxes']} val boxes{extra}",
            file=sys.stderr,
        )
    return result
