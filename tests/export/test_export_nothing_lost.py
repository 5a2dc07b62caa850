"""``export`` and ``quantize`` never destroy what they did not write (issue 16, findings 1, 5, 8a, 8b, 8d).

Each refusal runs the real entry point in-process and checks the exit code, a one-line error, no traceback, and that
the sha256 of every file that was there before is unchanged (and nothing new was left behind).

- 1: a folder whose ``manifest.json`` is not a lighthead-edge bundle's (a web app) is refused; a checkpoint, val or
  calibration data inside ``--out`` is refused; files a user put into a real bundle are carried into the new one.
- 5: a manifest edited after export (a class name, the input size) is refused at load in one line.
- 8a: ``quantize --max-drop -1`` (and every other out-of-range number of export and quantize) is a usage error.
- 8b: a SIGKILLed export's hidden partial folder is removed by the next export to that target (a live one is kept).
- 8d: an export prints no TracerWarning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from exported import ExportedAssets

from lighthead_edge.export.bundle import remove_leftovers
from lighthead_edge.runtime import BundleError, load_bundle
from lighthead_edge.runtime.bundle import write_manifest

FAST = ("--format", "onnx", "--runs", "1", "--threads", "1")


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, hidden ones too (a leftover shows up as new)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def one_error(err: str) -> str:
    """The error line, after checking that it is the only line (and no traceback)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def work(tmp_path: Path, assets: ExportedAssets) -> Path:
    """A folder holding a copy of the checkpoint (dir/model.pt), a real bundle with a val.json, and a web app."""
    (tmp_path / "dir").mkdir()
    shutil.copy(assets.checkpoint, tmp_path / "dir" / "model.pt")
    shutil.copytree(assets.bundle, tmp_path / "bundle")
    (tmp_path / "webapp").mkdir()
    (tmp_path / "webapp" / "manifest.json").write_text(json.dumps({"name": "My PWA", "start_url": "."}))
    (tmp_path / "webapp" / "index.html").write_text("<!doctype html><title>My PWA</title>")
    return tmp_path


def _quantize(checkpoint: Path, out: Path, calib: Path, *extra: str) -> list[str]:
    return ["quantize", str(checkpoint), "--calib", str(calib), "--out", str(out), "--backend", "onnxruntime", *extra]


REFUSALS = {
    # finding 1: a folder with someone else's manifest.json
    "export over a web app": (["export", "{w}/dir/model.pt", "--out", "{w}/webapp"], "not a lighthead-edge bundle"),
    "quantize over a web app": (_quantize(Path("{w}/dir/model.pt"), Path("{w}/webapp"), Path("{w}/bundle")),
                                "not a lighthead-edge bundle"),  # fmt: skip
    # finding 1: an input is never an output
    "checkpoint inside --out": (["export", "{w}/dir/model.pt", "--out", "{w}/dir"], "CHECKPOINT {w}/dir/model.pt is "
                                "inside --out {w}/dir"),  # fmt: skip
    "--out above the checkpoint": (["export", "{w}/dir/model.pt", "--out", "{w}"], "is inside --out"),
    "--val inside --out": (["export", "{w}/dir/model.pt", "--out", "{w}/bundle", "--val", "{w}/bundle/val.json"],
                           "--val {w}/bundle/val.json is inside --out {w}/bundle"),  # fmt: skip
    "quantize checkpoint inside --out": (_quantize(Path("{w}/dir/model.pt"), Path("{w}/dir"), Path("{w}/bundle")),
                                         "CHECKPOINT {w}/dir/model.pt is inside --out"),  # fmt: skip
    "quantize --calib inside --out": (_quantize(Path("{w}/dir/model.pt"), Path("{w}/bundle"),
                                                Path("{w}/bundle/val.json")), "--calib {w}/bundle/val.json is inside"),
    # not a place a folder can be written
    "--out under a file": (["export", "{w}/dir/model.pt", "--out", "{w}/webapp/index.html/bundle"],
                           "can't write --out {w}/webapp/index.html/bundle: {w}/webapp/index.html is not a writable "
                           "folder"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_write_touches_nothing(work: Path, cli, case: str) -> None:
    args, expected = REFUSALS[case]
    shutil.copy(work / "dir" / "model.pt", work / "bundle" / "val.json")  # any bytes: it must not be read
    before = snapshot(work)
    code, out, err = cli(*[a.replace("{w}", str(work)) for a in args])
    assert code == 5, err
    assert expected.replace("{w}", str(work)) in one_error(err) and out == ""
    assert snapshot(work) == before


def test_files_a_user_put_into_a_bundle_are_kept(work: Path, cli) -> None:
    bundle = work / "bundle"
    (bundle / "notes.txt").write_text("trees: 2024-05 flight")
    (bundle / "calibration").mkdir()
    (bundle / "calibration" / "frame_001.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    mine = {k: v for k, v in snapshot(bundle).items() if k.startswith(("notes", "calibration"))}
    code, _, err = cli("export", work / "dir" / "model.pt", "--out", bundle, *FAST)
    assert code == 0, err
    assert f"kept what the old {bundle} held besides the bundle: calibration, notes.txt" in err
    after = snapshot(bundle)
    assert {k: after.get(k) for k in mine} == mine
    assert set(after) == {*mine, "manifest.json", "model.onnx"}  # the old OpenVINO files went with the old bundle
    assert [a.key for a in load_bundle(bundle).artifacts] == ["onnxruntime/fp32"]
    assert sorted(p.name for p in work.iterdir()) == ["bundle", "dir", "webapp"]  # no hidden leftovers


@pytest.mark.parametrize(("edit", "value"), [("class_names", ["Car", "square", "triangle", "star"]),
                                             ("input", {"shape": [1, 160, 128, 3]})])  # fmt: skip
def test_a_manifest_edited_after_export_is_refused(work: Path, assets: ExportedAssets, cli, edit, value) -> None:
    path = work / "bundle" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest[edit] = {**manifest[edit], **value} if isinstance(value, dict) else value
    path.write_text(json.dumps(manifest, indent=2))
    before = snapshot(work)
    code, _, err = cli("eval", work / "bundle", "--data", assets.val_json, "--backend", "onnxruntime")
    assert code == 5
    assert one_error(err) == f"error: {path} was modified after export (manifest_sha256 mismatch); re-export the bundle"
    assert snapshot(work) == before
    with pytest.raises(BundleError, match="modified after export"):
        load_bundle(work / "bundle", verify=False)  # the manifest is checked even when the files are not


def test_the_digest_ignores_layout_and_survives_updates(work: Path) -> None:
    path = work / "bundle" / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps(manifest, sort_keys=True))  # re-indented, re-ordered: the same content
    assert load_bundle(work / "bundle").class_names == manifest["class_names"]
    written = write_manifest(work / "bundle", {**manifest, "class_names": ["a", "b", "c", "d"]})  # the tool's writer
    assert written["manifest_sha256"] != manifest["manifest_sha256"]
    assert load_bundle(work / "bundle").class_names == ["a", "b", "c", "d"]


EXPORT_NUMBERS = [("--opset", "16"), ("--opset", "21"), ("--threads", "0"), ("--runs", "0"), ("--runs", "-1")]
QUANTIZE_NUMBERS = [("--max-drop", "-1"), ("--max-drop", "0"), ("--max-drop", "1.5"), ("--max-drop", "inf"),
                    ("--calib-size", "0"), ("--prune", "0"), ("--prune", "1"), ("--prune", "-inf"),
                    ("--finetune-epochs", "-1"), ("--threads", "0"), ("--runs", "0")]  # fmt: skip


@pytest.mark.parametrize(("command", "option", "value"), [("export", *o) for o in EXPORT_NUMBERS]
                         + [("quantize", *o) for o in QUANTIZE_NUMBERS])  # fmt: skip
def test_every_number_out_of_range_is_one_usage_error(work: Path, cli, command, option, value) -> None:
    out = work / "new"
    args = (["export", work / "dir" / "model.pt", "--out", out] if command == "export" else
            _quantize(work / "dir" / "model.pt", out, work / "bundle", "--val", "v.json", "--data", "t.json"))
    before = snapshot(work)
    code, _, err = cli(*args, f"{option}={value}")
    assert code == 2
    assert f"Invalid value for '{option}'" in one_error(err)
    assert snapshot(work) == before and not out.exists()


@pytest.mark.parametrize("option", ["--max-drop", "--prune"])
def test_nan_is_refused(work: Path, cli, option) -> None:
    """click's FloatRange lets nan through its bounds; QuantizeSettings refuses it."""
    code, _, err = cli(*_quantize(work / "dir" / "model.pt", work / "new", work / "bundle", "--val", "v.json",
                                  "--data", "t.json", f"{option}=nan"))  # fmt: skip
    assert code == 2 and f"{option} must be" in one_error(err) and not (work / "new").exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_export_is_cleaned_up_by_the_next(work: Path) -> None:
    """SIGKILL while the hidden partial folder exists: it stays behind; the next export removes it, prints no
    TracerWarning (finding 8d), and keeps the partial folder of a live writer."""
    out = work / "out"
    command = [sys.executable, "-W", "always", "-m", "lighthead_edge.cli", "export", str(work / "dir" / "model.pt"),
               "--out", str(out), *FAST]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(work.glob(".out.*.partial")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftovers = list(work.glob(".out.*.partial"))
    assert len(leftovers) == 1 and not out.exists()
    live = work / f".out.{os.getpid()}.abc123.partial"  # this test's own process is alive: not a leftover
    live.mkdir()
    (live / "model.onnx").write_bytes(b"half")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "TracerWarning" not in done.stderr
    assert sorted(p.name for p in work.iterdir()) == sorted([live.name, "bundle", "dir", "out", "webapp"])
    load_bundle(out)


def test_an_old_bundle_moved_aside_by_a_killed_swap_is_put_back(tmp_path: Path, assets: ExportedAssets) -> None:
    """Killed between moving the old bundle aside and renaming the new one in: the old one returns to its place."""
    old = tmp_path / f".bundle.{_dead_pid()}.k9x_2.old"
    shutil.copytree(assets.bundle, old)
    (old / "notes.txt").write_text("mine")
    before = snapshot(old)
    partial = tmp_path / f".bundle.{_dead_pid()}.k9x_3.partial"
    partial.mkdir()
    foreign = tmp_path / ".bundle.notapid.partial"  # not a name this tool makes: left alone
    foreign.mkdir()
    remove_leftovers(tmp_path / "bundle")
    assert sorted(p.name for p in tmp_path.iterdir()) == [foreign.name, "bundle"]
    assert snapshot(tmp_path / "bundle") == before
