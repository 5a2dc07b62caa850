"""A valid COCO json whose image files are generated bad bytes: ``eval`` and ``train`` (the set as ``--data`` or as
``--val``) answer exit 3 in one line naming the image, before any work (train writes no model), and touch no file.

The bytes: empty, a PNG or JPEG cut short (any prefix of a real one: OpenCV decodes none of them), a PNG signature
before random bytes, random bytes, text, or a folder where the file should be. Some images of the set stay good.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from hostile import DATA, World, check_refused, discard, examples, scratch
from hypothesis import given
from hypothesis import strategies as st

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _encoded(suffix: str) -> bytes:
    image = np.zeros((64, 64, 3), np.uint8)
    cv2.circle(image, (32, 32), 20, (0, 200, 255), -1)
    return cv2.imencode(suffix, image)[1].tobytes()


PNG, JPEG = _encoded(".png"), _encoded(".jpg")
BAD_BYTES = {
    "empty": st.just(b""),
    "png cut short": st.integers(1, len(PNG) - 1).map(lambda n: PNG[:n]),
    "jpeg cut short": st.integers(1, len(JPEG) - 1).map(lambda n: JPEG[:n]),
    "png signature, then noise": st.binary(max_size=200).map(lambda b: PNG_SIGNATURE + b),
    "random bytes": st.binary(min_size=1, max_size=300).filter(lambda b: not b.startswith((b"\xff\xd8", b"\x89P"))),
    "text": st.text(min_size=1, max_size=80).map(str.encode),
    "a folder": st.none(),
}


def damage_images(draw: st.DataObject, world: World, ex: Path, kind: str, split: str) -> Path:
    """``ex/bad.json`` (the ``split`` json of ``world``, unchanged) beside ``ex/images``: copies of its images, one or
    more of them replaced by bytes of ``kind``."""
    doc = json.loads((world.data / f"{split}.json").read_text())
    names = [im["file_name"] for im in doc["images"]]
    (ex / "images").mkdir()
    bad = draw.draw(st.sets(st.sampled_from(names), min_size=1), label="replaced")
    for name in names:
        target = ex / name
        if name not in bad:
            shutil.copy2(world.data / name, target)
        elif kind == "a folder":
            target.mkdir()
        else:
            target.write_bytes(draw.draw(BAD_BYTES[kind], label=name))
    path = ex / "bad.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("kind", sorted(BAD_BYTES))
@examples(3)
@given(draw=st.data())
def test_eval_refuses_undecodable_images(cli, world: World, tmp_path: Path, kind: str, draw: st.DataObject) -> None:
    ex = scratch(tmp_path)
    bad = damage_images(draw, world, ex, kind, "val")
    line = check_refused(cli, ["eval", world.model, "--data", bad], [*world.roots, tmp_path], codes=[DATA])
    assert "images/" in line, line  # it names the image
    discard(ex)


@pytest.mark.parametrize("kind", sorted(BAD_BYTES))
@examples(2)
@given(draw=st.data())
def test_train_refuses_undecodable_images_before_training(
    cli, world: World, tmp_path: Path, kind: str, draw: st.DataObject
) -> None:
    ex = scratch(tmp_path)
    as_val = draw.draw(st.booleans(), label="the damaged set is --val (else --data)")
    bad = damage_images(draw, world, ex, kind, "val" if as_val else "train")
    data = ["--data", world.train_json, "--val", bad] if as_val else ["--data", bad]
    args = ["train", *data, "--backbone", "tiny", "--iters", "1", "--input-size", "64", "--batch-size", "1",
            "--warmup", "0", "--threads", "1", "--out", ex / "model.pt"]  # fmt: skip

    def no_model() -> list[str]:
        return [f"wrote {p.name}" for p in ex.iterdir() if p.name.startswith("model")]

    line = check_refused(cli, args, [*world.roots, tmp_path], codes=[DATA], also=no_model)
    assert "images/" in line, line
    discard(ex)
