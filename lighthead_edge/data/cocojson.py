"""The one reader of COCO detection json files: validated, torch-free (bundles are evaluated on torch-free hosts).

    data = load_coco("val.json")                              # checked records, or a DataError naming the file
    images, label_to_cat_id = coco_images("val.json", ["tree"])  # with the class names checked against a model's
    image_paths("val.json")                                   # the image files, relative to the json's folder

Labels are contiguous: ``1..C`` in the order of the categories sorted by id (``0`` is background), and
``label_to_cat_id`` maps them back to the file's category ids.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lighthead_edge.errors import ConfigError, DataError

MAX_COORD = 1e6  # pixels: no image is a million pixels wide; a bigger box coordinate is a broken file


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"annotation file {path} not found; check the path")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"annotation file {path} is not valid JSON ({e}); it must be a COCO detection file") from e


def _check_ids(path: Path, kind: str, records: list, text_key: str) -> set[int]:
    """The ids of ``records`` (categories or images), each a dict with an integer ``id`` and a string ``text_key``."""
    ids: set[int] = set()
    for r in records:
        if not isinstance(r, dict) or not _is_id(r.get("id")) or not isinstance(r.get(text_key), str):
            raise DataError(f"{path} is not a COCO detection file: {kind} {r!r} needs an integer 'id' and a string "
                            f"'{text_key}'")  # fmt: skip
        if r["id"] in ids:
            raise DataError(f"{path}: {kind} id {r['id']} appears twice; {kind} ids must be unique")
        ids.add(r["id"])
    return ids


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
    cat_ids = _check_ids(path, "category", data["categories"], "name")
    image_ids = _check_ids(path, "image", data["images"], "file_name")
    ann_ids: set[int] = set()
    for a in data["annotations"]:
        _check_annotation(path, a, image_ids, cat_ids)
        if a["id"] in ann_ids:
            raise DataError(f"{path}: annotation id {a['id']} appears twice; annotation ids must be unique")
        ann_ids.add(a["id"])


def _check_annotation(path: Path, a: Any, image_ids: set[int], cat_ids: set[int]) -> None:
    """One annotation: what training reads (bbox, image, category) and what pycocotools' evaluation of the file as
    ground truth reads (an integer ``id``, and ``area``/``iscrowd`` where given)."""
    not_coco = f"{path} is not a COCO detection file:"
    if not isinstance(a, dict) or not _is_id(a.get("id")):
        raise DataError(f"{not_coco} annotation {a!r} needs an integer 'id' (unique, as COCO evaluation indexes "
                        "annotations by it)"[:400])  # fmt: skip
    bbox = a.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise DataError(f"{not_coco} annotation {a['id']} needs a 'bbox' of 4 finite numbers [x, y, w, h], got "
                        f"{bbox!r}"[:400])  # fmt: skip
    if bbox[2] < 0 or bbox[3] < 0 or max(abs(v) for v in bbox) > MAX_COORD:
        raise DataError(f"{path}: annotation {a['id']} has bbox {bbox}: width and height must be >= 0 and every "
                        f"value within {MAX_COORD:g} pixels")  # fmt: skip
    if not _is_id(a.get("image_id")) or a["image_id"] not in image_ids:
        raise DataError(f"{path}: annotation {a['id']} refers to unknown image_id {a.get('image_id')!r}"[:400])
    if not _is_id(a.get("category_id")) or a["category_id"] not in cat_ids:
        raise DataError(f"{path}: annotation {a['id']} refers to unknown category_id {a.get('category_id')!r}"[:400])
    if "area" in a and not (_is_number(a["area"]) and a["area"] >= 0):
        raise DataError(f"{path}: annotation {a['id']} has area {a['area']!r}; it must be a number >= 0"[:400])
    if "iscrowd" in a and a["iscrowd"] not in (0, 1):
        raise DataError(f"{path}: annotation {a['id']} has iscrowd {a['iscrowd']!r}; it must be 0 or 1"[:400])


def load_coco(path: str | os.PathLike) -> dict:
    """Load and validate a COCO detection annotation file; raise ``DataError`` naming the file if it can't be used.

    Checks: the file exists and is JSON; it has ``images``, ``annotations`` and ``categories`` lists; at least one
    image and one category; unique integer ids (annotations' too); every annotation has a ``bbox [x, y, w, h]`` of
    finite numbers, no negative size, and refers to a known image and category. Image files are not touched.
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a COCO detection file: the top level must be an object with 'images' etc.")
    _check_records(path, data)
    return data


def categories(data: dict) -> tuple[list[str], dict[int, int]]:
    """The class names (categories sorted by id) and the label (``1..C``) -> category id map of loaded ``data``."""
    ordered = sorted(data["categories"], key=lambda c: c["id"])
    return [c["name"] for c in ordered], {i + 1: c["id"] for i, c in enumerate(ordered)}


def coco_images(
    path: str | os.PathLike, class_names: Sequence[str] | None = None
) -> tuple[list[dict[str, Any]], dict[int, int]]:
    """The image records of a COCO json and its label -> category id map.

    With ``class_names`` (a model's or a bundle's), the file's categories must be those classes in that order.
    """
    data = load_coco(path)
    names, label_to_cat_id = categories(data)
    if class_names is not None and names != list(class_names):
        raise DataError(f"{path} has classes {names}, the bundle has {list(class_names)}; evaluate on matching data")
    return data["images"], label_to_cat_id


def image_paths(path: str | os.PathLike) -> list[Path]:
    """The image files a COCO json lists, in its order, relative to the json's folder (not checked to exist)."""
    return [Path(path).parent / im["file_name"] for im in load_coco(path)["images"]]


def _written_by(path: Path, description: str) -> bool:
    """Whether the COCO json ``path`` says (``info.description``) that this tool wrote it, as ``description``."""
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f).get("info")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(info, dict) and str(info.get("description", "")).startswith(description)


def claim_dataset_folder(out: str | os.PathLike, description: str, names: Sequence[str]) -> None:
    """Refuse (``ConfigError``, before anything is written) to write a dataset into ``out`` over files this tool did
    not write: a json of ``names`` whose ``info.description`` does not start with ``description``, or a non-empty
    ``images/`` beside no such json of ours. A set written earlier by the same command may be replaced."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the dataset")
    ours = [name for name in names if (out / name).is_file() and _written_by(out / name, description)]
    for name in names:
        if (out / name).exists() and name not in ours:
            raise ConfigError(f"--out {out} holds {name}, which this command did not write; refusing to overwrite "
                              "it: give a new or empty folder")  # fmt: skip
    images = out / "images"
    if images.is_dir() and not ours and any(images.iterdir()):
        raise ConfigError(f"--out {out} holds images/ of another dataset; refusing to overwrite it: give a new or "
                          "empty folder")  # fmt: skip
