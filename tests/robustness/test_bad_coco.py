"""Broken COCO json, generated: ``eval``, ``train`` (``--data`` or ``--val``) and ``quantize --calib`` answer exit 3 in
one line, before any work (train writes no model), and touch no file.

Each family of damage is one case; Hypothesis draws where and how: a key dropped, a wrong type, an empty list, a
duplicate id, a dangling reference, a bbox with nan/inf/negative size/a string/a bool/the wrong length/huge values,
a record that is not an object, ids that are strings/bools/floats/lists or missing, an image file that is missing or a
folder, and bytes that are not JSON at all.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hostile import DATA, World, check_refused, discard, examples, scratch
from hypothesis import given
from hypothesis import strategies as st

LISTS = ("images", "annotations", "categories")
NOT_A_LIST = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=4), st.dictionaries(st.text(max_size=3),
                       st.integers(), max_size=2), st.booleans())  # fmt: skip
NOT_A_RECORD = st.one_of(st.none(), st.integers(), st.text(max_size=4), st.lists(st.integers(), max_size=3))
NOT_AN_ID = st.one_of(st.text(min_size=1, max_size=4), st.none(), st.booleans(), st.just(1.5),
                      st.lists(st.integers(), max_size=2))
BAD_COORD = st.one_of(st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308]), st.text(max_size=3),
                      st.none(), st.booleans(), st.lists(st.integers(), max_size=2))  # fmt: skip
Damage = Callable[[st.DataObject, dict], Any]  # the damaged document (dumped as JSON), or raw bytes


def _index(draw: st.DataObject, records: list) -> int:
    return draw.draw(st.integers(0, len(records) - 1))


def drop_key(draw: st.DataObject, doc: dict) -> dict:
    del doc[draw.draw(st.sampled_from(LISTS))]
    return doc


def wrong_type(draw: st.DataObject, doc: dict) -> dict:
    doc[draw.draw(st.sampled_from(LISTS))] = draw.draw(NOT_A_LIST)
    return doc


def empty(draw: st.DataObject, doc: dict) -> dict:
    doc[draw.draw(st.sampled_from(("images", "categories")))] = []
    return doc


def duplicate_id(draw: st.DataObject, doc: dict) -> dict:
    records = doc[draw.draw(st.sampled_from(LISTS))]
    i, j = draw.draw(st.lists(st.integers(0, len(records) - 1), min_size=2, max_size=2, unique=True))
    records[j]["id"] = records[i]["id"]
    return doc


def dangling(draw: st.DataObject, doc: dict) -> dict:
    key = draw.draw(st.sampled_from(("image_id", "category_id")))
    known = {r["id"] for r in doc["images" if key == "image_id" else "categories"]}
    ann = doc["annotations"][_index(draw, doc["annotations"])]
    if draw.draw(st.integers(0, 3)) == 0:
        del ann[key]
    else:
        ann[key] = draw.draw(st.one_of(st.integers(-5, 1000).filter(lambda v: v not in known), st.none(),
                                       st.text(max_size=3), st.just(str(min(known)))))  # fmt: skip
    return doc


def bad_bbox(draw: st.DataObject, doc: dict) -> dict:
    ann = doc["annotations"][_index(draw, doc["annotations"])]
    how = draw.draw(st.sampled_from(("coord", "negative size", "length", "not a list", "missing")))
    if how == "coord":
        ann["bbox"][draw.draw(st.integers(0, 3))] = draw.draw(BAD_COORD)
    elif how == "negative size":
        ann["bbox"][draw.draw(st.sampled_from((2, 3)))] = draw.draw(st.floats(-1e6, -1e-3))
    elif how == "length":
        ann["bbox"] = draw.draw(st.lists(st.floats(0, 50), max_size=7).filter(lambda b: len(b) != 4))
    elif how == "not a list":
        as_dict = st.dictionaries(st.sampled_from("xywh"), st.integers(0, 9))
        ann["bbox"] = draw.draw(st.one_of(st.text(max_size=8), st.none(), as_dict))
    else:
        del ann["bbox"]
    return doc


def not_a_record(draw: st.DataObject, doc: dict) -> dict:
    records = doc[draw.draw(st.sampled_from(LISTS))]
    records[_index(draw, records)] = draw.draw(NOT_A_RECORD)
    return doc


def bad_field(draw: st.DataObject, doc: dict) -> dict:
    """An id, a file name or a category name of the wrong type, or missing."""
    key, field = draw.draw(st.sampled_from([("images", "id"), ("categories", "id"), ("annotations", "id"),
                                            ("images", "file_name"), ("categories", "name")]))  # fmt: skip
    record = doc[key][_index(draw, doc[key])]
    if draw.draw(st.integers(0, 4)) == 0:
        del record[field]
    elif field == "id":
        record[field] = draw.draw(NOT_AN_ID)
    else:
        record[field] = draw.draw(st.one_of(st.none(), st.integers(), st.lists(st.text(max_size=2), max_size=2)))
    return doc


def missing_image(draw: st.DataObject, doc: dict) -> dict:
    image = doc["images"][_index(draw, doc["images"])]
    image["file_name"] = draw.draw(st.sampled_from(["", "images", "images/", "images/nothing_here.jpg", ".",
                                                    "../../../../../../dev/null", "bad.json"]))  # fmt: skip
    return doc


def not_json(draw: st.DataObject, doc: dict) -> bytes:
    text = json.dumps(doc).encode()
    return draw.draw(st.one_of(
        st.just(b""), st.binary(max_size=64).filter(lambda b: not _is_object(b)),
        st.integers(1, len(text) - 1).map(lambda n: text[:n]), st.just(json.dumps(doc).encode("utf-16")),
        st.just(text.replace(b'"images"', b"images", 1)),
        st.one_of(st.lists(st.integers(), max_size=3), st.text(max_size=5), st.integers(), st.none()).map(
            lambda v: json.dumps(v).encode()),
    ))  # fmt: skip


def _is_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:
        return False


DAMAGES: dict[str, Damage] = {f.__name__: f for f in (drop_key, wrong_type, empty, duplicate_id, dangling, bad_bbox,
                                                      not_a_record, bad_field, missing_image, not_json)}  # fmt: skip


def write_damaged(draw: st.DataObject, world: World, ex: Path, damage: str, split: str = "val") -> Path:
    """``ex/bad.json``: the ``split`` json of ``world`` with one damage drawn, beside ``ex/images`` (a link to the
    set's images, so that undamaged file names still resolve)."""
    doc = copy.deepcopy(json.loads((world.data / f"{split}.json").read_text()))
    bad = DAMAGES[damage](draw, doc)
    os.symlink(world.data / "images", ex / "images")
    path = ex / "bad.json"
    path.write_bytes(bad if isinstance(bad, bytes) else json.dumps(bad).encode())
    return path


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@examples(4)
@given(draw=st.data())
def test_eval_refuses_broken_coco(cli, world: World, tmp_path: Path, damage: str, draw: st.DataObject) -> None:
    ex = scratch(tmp_path)
    bad = write_damaged(draw, world, ex, damage)
    check_refused(cli, ["eval", world.model, "--data", bad, "--batch-size", "2"], [*world.roots, tmp_path],
                  codes=[DATA])  # fmt: skip
    discard(ex)


TRAIN = ("--backbone", "tiny", "--iters", "1", "--input-size", "64", "--batch-size", "1", "--warmup", "0",
         "--threads", "1")  # fmt: skip


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@examples(2)
@given(draw=st.data())
def test_train_refuses_broken_coco_before_training(
    cli, world: World, tmp_path: Path, damage: str, draw: st.DataObject
) -> None:
    ex = scratch(tmp_path)
    as_val = draw.draw(st.booleans(), label="the damaged json is --val (else --data)")
    bad = write_damaged(draw, world, ex, damage, split="train")
    data = ["--data", world.train_json, "--val", bad] if as_val else ["--data", bad]
    out = ex / "model.pt"

    def no_model() -> list[str]:
        return [f"wrote {p.name}" for p in ex.iterdir() if p.name.startswith("model")]

    check_refused(cli, ["train", *data, *TRAIN, "--out", out], [*world.roots, tmp_path], codes=[DATA], also=no_model)
    discard(ex)


@examples(6)
@given(draw=st.data(), damage=st.sampled_from(sorted(DAMAGES)))
def test_quantize_refuses_broken_calibration_coco(
    cli, world: World, tmp_path: Path, draw: st.DataObject, damage: str
) -> None:
    ex = scratch(tmp_path)
    bad = write_damaged(draw, world, ex, damage)
    out = ex / "bundle"
    args = ["quantize", world.model, "--calib", bad, "--backend", "onnxruntime", "--calib-size", "2", "--runs", "1",
            "--threads", "1", "--out", out]  # fmt: skip
    check_refused(cli, args, [*world.roots, tmp_path], codes=[DATA],
                  also=lambda: [f"left {out}"] if out.exists() else [])  # fmt: skip
    discard(ex)
