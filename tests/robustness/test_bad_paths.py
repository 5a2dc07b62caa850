"""Outputs aimed at what must not be written: an input of the command, a folder of a user's files, a folder where a
file goes (or a file where a folder goes), a path under a regular file, ``/dev/full``. Every command that writes
(eval --json, train, export, quantize, prune, bench --out, run --jsonl/--save/--summary-json, data synth) refuses
in one line with exit 2, 5 or 7 (7 for a full disk), and every file that was there is unchanged.

Hypothesis draws the names of the user's folders and files from odd characters (spaces, quotes, unicode, a leading
dash, shell and format characters) and the user's file contents.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hostile import BUNDLE, OUTPUT, USAGE, World, check_refused, dev_damage, dev_state, discard, examples, scratch
from hypothesis import given
from hypothesis import strategies as st

ODD_CHARS = st.sampled_from(list(" -.'\"$*?%{}[]()&;~#!@=+,éß日本\u200b\\"))
# a user's name with odd characters around and inside it (never "." or "..", never a "/")
ODD = st.tuples(st.text(ODD_CHARS, min_size=1, max_size=4), st.text(ODD_CHARS, max_size=3),
                st.text(ODD_CHARS, max_size=4)).map(lambda t: f"{t[0]}my{t[1]}work{t[2]}")  # fmt: skip
REFUSED = (USAGE, BUNDLE, OUTPUT)


@dataclass
class Case:
    """A hostile target for one command: ``build(world, bundle_world, ex, name)`` lays out the example in ``ex``
    and returns the arguments; ``codes`` are the documented ones; ``may_succeed``: only "no file changed" holds."""

    build: Callable[..., list]
    codes: tuple[int, ...] = REFUSED
    needs_bundle: bool = False
    running_line: bool = False
    may_succeed: bool = False


def user_folder(ex: Path, name: str, content: bytes) -> Path:
    """A folder of a user's files: a web app with its own ``manifest.json``, a page, notes, a report."""
    folder = ex / name
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"name": "My PWA", "start_url": "."}))
    (folder / "index.html").write_bytes(content)
    (folder / "notes.txt").write_bytes(content[::-1])
    (folder / "report.md").write_text("# my own report\n")
    return folder


def user_file(ex: Path, name: str, content: bytes) -> Path:
    path = ex / name
    path.write_bytes(content)
    return path


def own_inputs(w: World, ex: Path) -> tuple[Path, Path, Path]:
    """Private copies of the inputs in ``ex``: model.pt in ``ex/ckpt/``, and the data set in ``ex/data/``."""
    (ex / "ckpt").mkdir()
    model = Path(shutil.copy2(w.model, ex / "ckpt" / "model.pt"))
    data = Path(shutil.copytree(w.data, ex / "data"))
    return model, data / "val.json", data / "train.json"


EVAL = ["--batch-size", "2"]
TRAIN = ["--backbone", "tiny", "--iters", "1", "--input-size", "64", "--batch-size", "1", "--warmup", "0",
         "--threads", "1"]  # fmt: skip
EXPORT = ["--format", "onnx", "--runs", "1", "--threads", "1"]
QUANT = ["--backend", "onnxruntime", "--calib-size", "2", "--runs", "1", "--threads", "1"]
PRUNE = ["--finetune-epochs", "0", "--no-reconstruct", "--threads", "1", "--batch-size", "1"]
SYNTH = ["--num", "1", "--val", "1", "--size", "64"]


def _eval(w, bw, ex, name, content, target) -> list:
    model, val, _ = own_inputs(w, ex)
    return ["eval", model, "--data", val, *EVAL, "--json", target(model, val, ex, name, content)]


def _train(w, bw, ex, name, content, target) -> list:
    model, _, train = own_inputs(w, ex)
    return ["train", "--data", train, *TRAIN, "--out", target(model, train, ex, name, content)]


def _export(w, bw, ex, name, content, target) -> list:
    model, val, _ = own_inputs(w, ex)
    return ["export", model, *EXPORT, "--out", target(model, val, ex, name, content)]


def _quantize(w, bw, ex, name, content, target) -> list:
    model, val, _ = own_inputs(w, ex)
    return ["quantize", model, "--calib", val, *QUANT, "--out", target(model, val, ex, name, content)]


def _prune(w, bw, ex, name, content, target) -> list:
    model, _, train = own_inputs(w, ex)
    return ["prune", model, "--data", train, *PRUNE, "--out", target(model, train, ex, name, content)]


def _bench(w, bw, ex, name, content, target) -> list:
    bundle = Path(shutil.copytree(bw.bundle, ex / "bundle"))
    return ["bench", bundle, "--runs", "1", "--threads", "1", "--out", target(bundle, bundle / "manifest.json", ex,
                                                                               name, content)]  # fmt: skip


def _run(option: str) -> Callable[..., list]:
    def build(w, bw, ex, name, content, target) -> list:
        bundle = Path(shutil.copytree(bw.bundle, ex / "bundle"))
        frames = Path(shutil.copytree(bw.frames, ex / "frames"))
        image = next(frames.iterdir())
        return ["run", "--model", bundle, "--images", frames, "--max-frames", "1", "--threads", "1", "--stats-every",
                "0", option, target(bundle, image, ex, name, content)]  # fmt: skip

    return build


def _synth(w, bw, ex, name, content, target) -> list:
    return ["data", "synth", *SYNTH, "--out", target(None, None, ex, name, content)]


# targets: (model-or-bundle, an input file, ex, name, content) -> the output path
def the_input(model, inp, ex, name, content):
    return inp


def the_model(model, inp, ex, name, content):
    return model


def the_manifest(bundle, inp, ex, name, content):
    return bundle / "manifest.json"


def folder_of_model(model, inp, ex, name, content):
    return model.parent


def folder_of_input(model, inp, ex, name, content):
    return inp.parent


def a_user_folder(model, inp, ex, name, content):
    return user_folder(ex, name, content)


def a_user_file(model, inp, ex, name, content):
    return user_file(ex, name, content)


def under_a_file(model, inp, ex, name, content):
    return user_file(ex, name, content) / "out.json"


def dev_full(model, inp, ex, name, content):
    return "/dev/full"


def synth_over_user_set(model, inp, ex, name, content):
    folder = ex / name
    (folder / "images").mkdir(parents=True)
    (folder / "train.json").write_text(json.dumps({"images": [], "note": "my own labels"}))
    (folder / "images" / "photo.jpg").write_bytes(content)
    return folder


def run_case(option: str, target, **kw) -> Case:
    return Case(lambda *a, t=target: _run(option)(*a, t), needs_bundle=True, running_line=True, **kw)


def case(builder, target, **kw) -> Case:
    return Case(lambda *a, t=target: builder(*a, t), **kw)


CASES: dict[str, Case] = {
    "eval --json over its --data": case(_eval, the_input),
    "eval --json over its model": case(_eval, the_model),
    "eval --json at a user's folder": case(_eval, a_user_folder),
    "eval --json under a file": case(_eval, under_a_file),
    "eval --json /dev/full": case(_eval, dev_full, codes=(OUTPUT,)),
    "train --out over its --data": case(_train, the_input),
    "train --out at a user's folder": case(_train, a_user_folder),
    "train --out under a file": case(_train, under_a_file),
    "export --out the checkpoint itself": case(_export, the_model),
    "export --out the checkpoint's folder": case(_export, folder_of_model),
    "export --out a user's folder": case(_export, a_user_folder),
    "export --out a user's file": case(_export, a_user_file),
    "export --out under a file": case(_export, under_a_file),
    "quantize --out the checkpoint's folder": case(_quantize, folder_of_model),
    "quantize --out the --calib folder": case(_quantize, folder_of_input),
    "quantize --out a user's folder": case(_quantize, a_user_folder),
    "quantize --out under a file": case(_quantize, under_a_file),
    "prune --out over its model": case(_prune, the_model),
    "prune --out over its --data": case(_prune, the_input),
    "prune --out at a user's folder": case(_prune, a_user_folder),
    "prune --out under a file": case(_prune, under_a_file),
    "bench --out a user's file": case(_bench, a_user_file, needs_bundle=True),
    "bench --out under a file": case(_bench, under_a_file, needs_bundle=True),
    "bench --out a user's folder (its report.md)": case(_bench, a_user_folder, needs_bundle=True, may_succeed=True),
    "run --jsonl over an input image": run_case("--jsonl", the_input),
    "run --save over the manifest": run_case("--save", the_manifest),
    "run --summary-json at a user's folder": run_case("--summary-json", a_user_folder),
    "run --jsonl under a file": run_case("--jsonl", under_a_file),
    "run --jsonl /dev/full": run_case("--jsonl", dev_full, codes=(OUTPUT,)),
    "run --summary-json /dev/full": run_case("--summary-json", dev_full, codes=(OUTPUT,)),
    "data synth --out a user's data set": case(_synth, synth_over_user_set),
    "data synth --out a user's file": case(_synth, a_user_file),
    "data synth --out under a file": case(_synth, under_a_file),
}


@pytest.mark.parametrize("name", sorted(CASES))
@examples(3)
@given(user_name=ODD, content=st.binary(min_size=1, max_size=64))
def test_output_never_destroys(cli, world: World, request, tmp_path: Path, name: str, user_name: str,
                               content: bytes) -> None:  # fmt: skip
    spec = CASES[name]
    bw = request.getfixturevalue("bundle_world") if spec.needs_bundle else None
    roots = [*(bw.roots if bw else world.roots), tmp_path]
    ex = scratch(tmp_path)
    args = spec.build(world, bw, ex, user_name, content)
    dev = dev_state()
    try:
        check_refused(cli, args, roots, codes=spec.codes, running_line=spec.running_line, may_succeed=spec.may_succeed,
                      also=lambda: dev_damage(dev))  # fmt: skip
    finally:
        dev_damage(dev)  # undone even when the check failed
    discard(ex)
