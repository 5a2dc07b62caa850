"""A damaged ``model.pt``: ``info``, ``info --json``, ``eval`` and ``export`` answer exit 4 in one line before any
work (export writes no bundle), and touch no file.

Damage: bytes that are no checkpoint (empty, random, a real checkpoint cut short, text, a zip of junk), a payload of
the wrong shape (not a dict, the format or a key missing), class names of the wrong type or number, a model config
with an impossible value, weights with nan/inf or a tensor dropped, reshaped or replaced, and metadata that is not
a dict (nor empty; ``info`` only: the other commands don't read it).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hostile import CHECKPOINT_CODE, World, check_refused, discard, examples, scratch
from hypothesis import given
from hypothesis import strategies as st

Payload = dict[str, Any]


def _torch():
    import torch

    return torch


def not_a_checkpoint(draw: st.DataObject, payload: Payload, real: bytes) -> bytes:
    junk_zip = io.BytesIO()
    with zipfile.ZipFile(junk_zip, "w") as z:
        z.writestr("archive/data.pkl", draw.draw(st.binary(max_size=40)))
    return draw.draw(st.one_of(
        st.just(b""), st.binary(min_size=1, max_size=200), st.integers(1, len(real) - 1).map(lambda n: real[:n]),
        st.text(min_size=1, max_size=50).map(str.encode), st.just(junk_zip.getvalue()),
    ))  # fmt: skip


def wrong_shape(draw: st.DataObject, payload: Payload, real: bytes) -> Any:
    how = draw.draw(st.sampled_from(["not a dict", "format", "drop key"]))
    if how == "not a dict":
        return draw.draw(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.just([payload["classes"]])))
    if how == "format":
        payload["format"] = draw.draw(st.one_of(st.none(), st.integers(), st.text(max_size=12)))
    else:
        del payload[draw.draw(st.sampled_from(["format", "config", "classes", "state_dict"]))]
    return payload


def classes(draw: st.DataObject, payload: Payload, real: bytes) -> Payload:
    names = payload["classes"]
    how = draw.draw(st.sampled_from(["type", "drop", "add", "element"]))
    if how == "type":
        payload["classes"] = draw.draw(st.one_of(st.none(), st.integers(), st.text(max_size=8), st.just({"a": 1})))
    elif how == "drop":
        names.pop(draw.draw(st.integers(0, len(names) - 1)))
    elif how == "add":
        names.append(draw.draw(st.text(min_size=1, max_size=6)))
    else:
        names[draw.draw(st.integers(0, len(names) - 1))] = draw.draw(st.one_of(st.none(), st.integers(), st.just([])))
    return payload


IMPOSSIBLE = {
    "num_classes": st.sampled_from([0, -1, "4", None, 4.5]),
    "backbone": st.sampled_from(["nope", None, 1, ""]),
    "input_size": st.sampled_from([[0, 0], [-128, 128], "128", [128], None, [128.5, 128]]),
    "anchor_scales": st.sampled_from([[], [-2.0], ["a"], None, [float("nan")]]),
    "pixel_std": st.sampled_from([[0.0, 0.0, 0.0], [1.0], None, [float("nan")] * 3]),
    "score_thresh": st.sampled_from([float("nan"), -1.0, 2.0, "x"]),
    "rpn_nms_thresh": st.sampled_from([float("nan"), -0.5, 1.5]),
}


def config(draw: st.DataObject, payload: Payload, real: bytes) -> Payload:
    if draw.draw(st.integers(0, 5)) == 0:
        payload["config"] = draw.draw(st.one_of(st.none(), st.integers(), st.text(max_size=4), st.just([])))
        return payload
    key = draw.draw(st.sampled_from(sorted(IMPOSSIBLE)))
    payload["config"][key] = draw.draw(IMPOSSIBLE[key])
    return payload


def weights(draw: st.DataObject, payload: Payload, real: bytes) -> Payload:
    torch = _torch()
    state = payload["state_dict"]
    names = [k for k, v in state.items() if v.is_floating_point() and v.numel() > 1]
    key = names[draw.draw(st.integers(0, len(names) - 1))]
    how = draw.draw(st.sampled_from(["nan", "inf", "drop", "reshape", "not a tensor", "not a dict"]))
    if how in ("nan", "inf"):
        state[key] = state[key].clone()
        state[key].view(-1)[draw.draw(st.integers(0, state[key].numel() - 1))] = float(how)
    elif how == "drop":
        del state[key]
    elif how == "reshape":
        state[key] = torch.zeros(state[key].numel() + 1)
    elif how == "not a tensor":
        state[key] = draw.draw(st.one_of(st.none(), st.integers(), st.text(max_size=3)))
    else:
        payload["state_dict"] = list(state.values())
    return payload


def meta(draw: st.DataObject, payload: Payload, real: bytes) -> Payload:
    payload["meta"] = draw.draw(st.one_of(st.integers().filter(bool), st.text(min_size=1, max_size=5),
                                          st.lists(st.integers(), min_size=1)))  # fmt: skip
    return payload


DAMAGES: dict[str, Callable[[st.DataObject, Payload, bytes], Any]] = {
    f.__name__: f for f in (not_a_checkpoint, wrong_shape, classes, config, weights, meta)
}
COMMANDS = ("info", "info --json", "eval", "export")
CASES = [(d, c) for d in sorted(DAMAGES) for c in COMMANDS if d != "meta" or c.startswith("info")]


def write_damaged(draw: st.DataObject, world: World, ex: Path, damage: str) -> Path:
    torch = _torch()
    real = world.model.read_bytes()
    payload = torch.load(world.model, map_location="cpu", weights_only=True)
    bad = DAMAGES[damage](draw, payload, real)
    path = ex / "model.pt"
    if isinstance(bad, bytes):
        path.write_bytes(bad)
    else:
        torch.save(bad, path)
    return path


@pytest.mark.parametrize("damage, command", CASES, ids=[f"{c}-{d}" for d, c in CASES])
@examples(3)
@given(draw=st.data())
def test_damaged_checkpoint_is_refused(
    cli, world: World, tmp_path: Path, damage: str, command: str, draw: st.DataObject
) -> None:
    ex = scratch(tmp_path)
    model = write_damaged(draw, world, ex, damage)
    out = ex / "bundle"
    args = {
        "info": ["info", model], "info --json": ["info", model, "--json"],
        "eval": ["eval", model, "--data", world.val_json, "--batch-size", "2"],
        "export": ["export", model, "--out", out, "--format", "onnx", "--runs", "1", "--threads", "1"],
    }[command]  # fmt: skip
    check_refused(cli, args, [*world.roots, tmp_path], codes=[CHECKPOINT_CODE],
                  also=lambda: [f"wrote {out}"] if out.exists() else [])  # fmt: skip
    discard(ex)
