"""Issue 16 (nothing lost) for data, train, eval, info, prune, bench and demo: bad images, NaN weights, numbers out of
range, outputs that are folders or inputs, and dataset folders that are not ours. Each case asserts the exit code, one
error line on stderr, no traceback, and the sha256 of every file that was there before unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import torch

from lighthead_edge.cli import cli as cli_group
from lighthead_edge.data.synth import generate_dataset
from lighthead_edge.modeling.checkpoint import save_checkpoint
from lighthead_edge.modeling.detector import build_detector

TRAIN = ["--backbone", "tiny", "--input-size", "64", "--batch-size", "2", "--iters", "1", "--warmup", "0"]


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}  # fmt: skip


def error_lines(err: str) -> list[str]:
    """What stays on screen: lines, less progress bars (they redraw with \\r)."""
    return [line for line in re.split(r"[\r\n]", err) if line.strip() and "%|" not in line]


def assert_refused(result: tuple, code: int, match: str, before: dict, root: Path, *, only_line: bool = True) -> None:
    got, _, err = result
    assert got == code, err
    assert "Traceback" not in err
    lines = error_lines(err)
    if only_line:
        assert len(lines) == 1, err
    assert lines[-1].startswith("error: ") and match in lines[-1], err
    after = snapshot(root)
    assert {k: after.get(k) for k in before} == before


@pytest.fixture
def work(tmp_path: Path) -> dict[str, Path]:
    """A 4 + 2 image synthetic set at 64 px and a tiny 4-class checkpoint of its classes, in ``tmp_path``."""
    info = generate_dataset(tmp_path / "set", 4, 2, size=(64, 64), seed=1, progress=False)
    from lighthead_edge.config import ModelConfig

    torch.manual_seed(0)
    model = build_detector(ModelConfig(num_classes=4, backbone="tiny", input_size=(64, 64)))
    ckpt = save_checkpoint(tmp_path / "model.pt", model, info["classes"])
    return {"root": tmp_path, "train": Path(info["train"]), "val": Path(info["val"]), "model": ckpt}


def _image(json_path: Path, index: int = 0) -> Path:
    return json_path.parent / json.loads(json_path.read_text())["images"][index]["file_name"]


# ------------------------------------------------------------------------------------------ 6: bad images, NaN
def test_eval_zero_byte_image(cli, work):
    _image(work["val"], 1).write_bytes(b"")
    before = snapshot(work["root"])
    result = cli("eval", work["model"], "--data", work["val"])
    assert_refused(result, 3, "val_000001.jpg", before, work["root"])


@pytest.mark.parametrize("split", ["train", "val"])
def test_train_bad_image_refused_before_training(cli, work, split):
    """A zero-byte train image, or a val image that only fails to decode (a valid JPEG header, then junk): refused
    before training starts (one line: not even the 'training ...' line), so no model is lost after the work."""
    bad = _image(work[split], 1)
    bad.write_bytes(b"" if split == "train" else b"\xff\xd8\xff\xe0 a truncated jpeg")
    before = snapshot(work["root"])
    out = work["root"] / "m.pt"
    result = cli("train", "--data", work["train"], "--val", work["val"], *TRAIN, "--out", out)
    assert_refused(result, 3, bad.name, before, work["root"])
    assert not out.exists()


def test_train_failing_validation_saves_the_model(cli, work, monkeypatch):
    """An image that fails only during a validation pass mid-run: the model trained so far is saved first."""
    from lighthead_edge import train as train_module
    from lighthead_edge.errors import DataError

    def unreadable(*args, **kwargs):
        raise DataError("image val_000001.jpg can't be decoded")

    monkeypatch.setattr(train_module, "predict_dataset", unreadable)
    before = snapshot(work["root"])
    out = work["root"] / "m.pt"
    result = cli("train", "--data", work["train"], "--val", work["val"], *TRAIN, "--out", out)
    assert_refused(result, 3, f"saved to {out}", before, work["root"], only_line=False)
    assert "val_000001.jpg" in result[2]
    assert out.is_file() and (work["root"] / "m.last.pt").is_file()


def test_nan_weights_refused_at_load(cli, work):
    payload = torch.load(work["model"], weights_only=True)
    name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][name] = torch.full_like(payload["state_dict"][name], float("nan"))
    torch.save(payload, work["root"] / "nan.pt")
    before = snapshot(work["root"])
    for command in (["info", work["root"] / "nan.pt"], ["eval", work["root"] / "nan.pt", "--data", work["val"]]):
        assert_refused(cli(*command), 4, f"non-finite weights in {name}", before, work["root"])


# ------------------------------------------------------------------------------------ numbers out of range (click)
BAD_NUMBERS = [
    ("data synth", ["--num", "0"]), ("data synth", ["--val", "0"]), ("data synth", ["--size", "63"]),
    ("data synth", ["--seed", "-1"]),
    ("data neon-trees", ["--tile", "0"]), ("data neon-trees", ["--overlap", "-1"]),
    ("data neon-trees", ["--holdout", "nan"]), ("data neon-trees", ["--holdout", "0.6"]),
    ("train", ["--epochs", "-1"]), ("train", ["--epochs", "0"]), ("train", ["--iters", "0"]),
    ("train", ["--batch-size", "0"]), ("train", ["--lr", "nan"]), ("train", ["--lr", "0"]),
    ("train", ["--max-minutes", "inf"]), ("train", ["--warmup", "-1"]), ("train", ["--threads", "0"]),
    ("train", ["--seed", "-1"]), ("train", ["--input-size", "0"]),
    ("eval", ["--batch-size", "0"]), ("eval", ["--threads", "0"]),
    ("prune", ["--ratio", "1"]), ("prune", ["--ratio", "nan"]), ("prune", ["--fc-ratio", "-0.1"]),
    ("prune", ["--rpn-ratio", "1"]), ("prune", ["--hires-ratio", "-0.1"]), ("prune", ["--thin-ratio", "inf"]),
    ("prune", ["--finetune-epochs", "-1"]),
    ("prune", ["--finetune-iters", "-1"]),
    ("prune", ["--finetune-minutes", "0"]), ("prune", ["--calib-batches", "0"]), ("prune", ["--round-to", "-1"]),
    ("prune", ["--lr", "inf"]), ("prune", ["--batch-size", "0"]), ("prune", ["--threads", "0"]),
    ("prune", ["--seed", "-1"]),
    ("bench", ["--runs", "0"]),
    ("demo", ["--minutes", "0"]), ("demo", ["--minutes", "nan"]), ("demo", ["--threads", "0"]),
]  # fmt: skip
BASE = {
    "data synth": ["--out", "{root}/new"], "data neon-trees": ["--out", "{root}/new"],
    "train": ["--data", "{train}", "--out", "{root}/m.pt"], "eval": ["{model}", "--data", "{val}"],
    "prune": ["{model}", "--data", "{train}", "--out", "{root}/p.pt"], "bench": ["{model}"],
    "demo": ["--out", "{root}/demo"],
}  # fmt: skip


@pytest.mark.parametrize(("command", "bad"), BAD_NUMBERS, ids=[f"{c}{' '.join(b)}" for c, b in BAD_NUMBERS])
def test_number_out_of_range(cli, work, command, bad):
    before = snapshot(work["root"])
    args = [a.format(**work) for a in BASE[command]]
    result = cli(*command.split(), *args, *bad)
    assert_refused(result, 2, bad[0], before, work["root"])
    assert sorted(p.name for p in work["root"].iterdir()) == ["model.pt", "set"]


def test_every_numeric_option_has_a_range():
    """Each int/float option of these commands is an IntRange/FloatRange, and each is exercised above."""
    data = cli_group.commands["data"].commands
    commands = {"data synth": data["synth"], "data neon-trees": data["neon-trees"],
                **{name: cli_group.commands[name] for name in ("train", "eval", "info", "prune", "bench", "demo")}}
    tested = {(c, b[0]) for c, b in BAD_NUMBERS}
    for name, command in commands.items():
        for param in command.params:
            if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                assert isinstance(param.type, (click.IntRange, click.FloatRange)), (name, param.name)
                assert (name, param.opts[0]) in tested, (name, param.opts[0])


# ---------------------------------------------------------------------------------- 7: train lies or wastes work
def test_out_is_a_folder(cli, work):
    folder = work["root"] / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    before = snapshot(work["root"])
    assert_refused(cli("train", "--data", work["train"], *TRAIN, "--out", folder), 2, "is a folder", before,
                   work["root"])  # fmt: skip
    assert_refused(cli("prune", work["model"], "--data", work["train"], "--out", folder), 2, "is a folder", before,
                   work["root"])  # fmt: skip


def test_out_under_a_file(cli, work):
    before = snapshot(work["root"])
    out = work["model"] / "m.pt"
    assert_refused(cli("train", "--data", work["train"], *TRAIN, "--out", out), 2, "is a file", before, work["root"])
    assert_refused(cli("prune", work["model"], "--data", work["train"], "--out", out), 2, "is a file", before,
                   work["root"])  # fmt: skip


@pytest.fixture
def unwritable_folder(work):
    """A folder nobody may write to: mode 555, or for root (whom modes don't stop; CI runs as root) a read-only
    tmpfs. A mount that fails is a failed test, not a skipped one."""
    locked = work["root"] / "locked"
    locked.mkdir()
    if os.geteuid() != 0:
        locked.chmod(0o555)
        yield locked
        locked.chmod(0o755)
        return
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(locked)], capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, f"can't mount a read-only tmpfs as root: {proc.stderr.strip()}"
    try:
        yield locked
    finally:
        subprocess.run(["umount", str(locked)], check=True)


def test_out_in_an_unwritable_folder(cli, work, unwritable_folder):
    before = snapshot(work["root"])
    result = cli("train", "--data", work["train"], *TRAIN, "--out", unwritable_folder / "m.pt")
    assert_refused(result, 2, "permission denied", before, work["root"])


def test_out_that_is_no_regular_file(cli, work):
    """The atomic rename would replace a device or a FIFO (/dev/full, as root) with a regular file: refused up front.
    A FIFO in the test's folder stands for both, so that a regression can't replace the machine's /dev/full."""
    target = work["root"] / "fifo"
    os.mkfifo(target)
    kind = target.stat().st_mode
    before = snapshot(work["root"])
    result = cli("train", "--data", work["train"], *TRAIN, "--out", target)
    assert_refused(result, 2, "is not a regular file", before, work["root"])
    assert target.stat().st_mode == kind  # still the device / the FIFO


@pytest.mark.parametrize("option", ["--data", "--init", "--distill-from", "--out's resumable state"])
def test_train_input_is_never_the_output(cli, work, option):
    other = work["root"] / "other.pt"
    shutil.copy(work["model"], other)
    args = ["--data", work["train"], *TRAIN, "--init", work["model"], "--distill-from", other]
    out = {"--data": work["train"], "--init": work["model"], "--distill-from": other}.get(option)
    if out is None:  # <out>.last.pt would be written over the --init checkpoint
        shutil.copy(work["model"], work["root"] / "m.last.pt")
        args[args.index("--init") + 1], out = work["root"] / "m.last.pt", work["root"] / "m.pt"
    before = snapshot(work["root"])
    assert_refused(cli("train", *args, "--out", out), 2, option, before, work["root"])


def test_prune_out_is_not_its_model(cli, work):
    before = snapshot(work["root"])
    result = cli("prune", work["model"], "--data", work["train"], "--out", work["model"])
    assert_refused(result, 2, "is also MODEL", before, work["root"])


def test_eval_json_is_not_its_data(cli, work):
    before = snapshot(work["root"])
    result = cli("eval", work["model"], "--data", work["val"], "--json", work["val"])
    assert_refused(result, 2, "is also --data", before, work["root"])


def test_train_says_saved_only_for_a_file_it_wrote(cli, work):
    out = work["root"] / "m.pt"
    code, text, err = cli("train", "--data", work["train"], *TRAIN, "--out", out)
    assert code == 0 and f"saved {out}" in text and out.is_file(), err
    before = snapshot(work["root"])
    result = cli("train", "--data", work["train"], *TRAIN, "--out", out, "--resume")
    assert_refused(result, 2, "nothing to train", before, work["root"], only_line=False)
    assert "saved" not in result[1]


# ---------------------------------------------------------------------------------------------- 8c: data synth
@pytest.mark.parametrize("kind", ["foreign json", "foreign images"])
def test_synth_never_overwrites_another_dataset(cli, work, kind):
    out = work["root"] / "theirs"
    (out / "images").mkdir(parents=True)
    if kind == "foreign json":
        (out / "train.json").write_text(json.dumps({"info": {"description": "my labelled photos"}, "images": []}))
    (out / "images" / "train_000000.jpg").write_bytes(b"my photo")
    before = snapshot(work["root"])
    result = cli("data", "synth", "--out", out, "--num", "1", "--size", "64")
    assert_refused(result, 2, "refusing to overwrite", before, work["root"])


def test_synth_replaces_its_own_set(cli, work):
    set_dir = work["train"].parent
    (set_dir / "notes.txt").write_text("kept")
    code, _, err = cli("data", "synth", "--out", set_dir, "--num", "2", "--val", "1", "--size", "64", "--seed", "5")
    assert code == 0, err
    assert len(json.loads(work["train"].read_text())["images"]) == 2
    assert (set_dir / "notes.txt").read_text() == "kept"


def test_a_checkpoint_save_on_a_full_disk_is_an_output_error(tmp_path):
    """A full disk while saving: exit 7 naming the path, the old file intact, no temporary left (a 64 KiB tmpfs; as
    root, which CI is; a mount that fails is a failed test)."""
    from lighthead_edge.errors import OutputError
    from lighthead_edge.modeling.checkpoint import atomic_torch_save

    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, f"can't mount a small tmpfs (needs root): {proc.stderr.strip()}"
    try:
        target = disk / "model.pt"
        target.write_bytes(b"the user's old checkpoint")
        with pytest.raises(OutputError, match=f"can't write {target}: No space left on device") as info:
            atomic_torch_save({"w": torch.zeros(100_000)}, target)
        assert info.value.exit_code == 7
        assert target.read_bytes() == b"the user's old checkpoint" and sorted(os.listdir(disk)) == ["model.pt"]
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_ground_truth_without_area_or_iscrowd_is_evaluated(tmp_path):
    """Both fields are optional in COCO files but COCOeval reads them: filled in (w * h, 0), not a KeyError."""
    from lighthead_edge.evaluate import coco_map

    info = generate_dataset(tmp_path / "d", 1, 2, size=(96, 96), seed=0, progress=False)
    data = json.loads(Path(info["val"]).read_text())
    for a in data["annotations"]:
        a.pop("area", None), a.pop("iscrowd", None)
    bare = tmp_path / "d" / "bare.json"
    bare.write_text(json.dumps(data))
    truth = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
             for a in data["annotations"]]  # fmt: skip
    assert coco_map(bare, truth)["AP"] == pytest.approx(1.0)
