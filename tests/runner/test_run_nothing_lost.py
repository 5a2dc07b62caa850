"""``lighthead-edge run`` never destroys a user's file (issue 16, findings 2-4) and answers bad numbers in one line.

Each test runs the real entry point in-process and checks the exit code, a one-line error, no traceback, and that the
sha256 of every file that was there before is unchanged (and that nothing was left behind).

- An input is never an output: ``--save``/``--jsonl``/``--summary-json`` naming the video, an image of ``--images``,
  a file of the bundle, or each other, are refused before anything is opened.
- Outputs open only after the source and the bundle work: an old JSONL, video and summary survive a missing video, a
  corrupt bundle, an undecodable video, an empty image folder and an unknown device.
- A full disk: ``--jsonl /dev/full`` and a JSONL on a small tmpfs exit 7 naming the path with complete lines only; an
  MP4/AVI that doesn't fit is removed (the old file at that path kept) and exits 7.
- A path that is no regular file (``/dev/full``, a FIFO) is never replaced by a rename: ``--summary-json`` and
  ``--jsonl`` write into it (``/dev/full``: exit 7 naming it), ``--save`` refuses it before anything opens.
- ``--stdin-raw`` with a malformed or huge ``WxH`` is a usage error (exit 2), a good size with no stream exit 6.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
from exported import ExportedAssets
from runner_media import count_video_frames, make_frame, write_video

RUN = ("--threads", "1", "--stats-every", "0")


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (hidden ones too: a partial file left behind shows up as new)."""
    files = [p for root in roots for p in ([root] if root.is_file() else sorted(root.rglob("*"))) if p.is_file()]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def one_error(code: int, err: str) -> str:
    """The error line, after checking that it is the only line (and no traceback)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]


def error_after_start(err: str) -> str:
    """A run that failed while writing: the start line, then exactly one error line (and no traceback)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 2, err
    assert lines[0].startswith("running ") and lines[1].startswith("error: "), err
    return lines[1]


@pytest.fixture(scope="module")
def bundle(assets: ExportedAssets, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the shared bundle (a test that failed to protect it must not break the others)."""
    return Path(shutil.copytree(assets.bundle, tmp_path_factory.mktemp("nothing_lost") / "bundle"))


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """``clip.mp4`` (12 frames), ``images/`` (2 PNGs), and old outputs: ``old.jsonl``, ``old.mp4``, ``old.json``."""
    write_video(tmp_path / "clip.mp4", 12)
    write_video(tmp_path / "old.mp4", 5)
    (tmp_path / "images").mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / "images" / f"{i:03d}.png"), make_frame(i))
    (tmp_path / "old.jsonl").write_text('{"frame": 0, "detections": []}\n' * 50)
    (tmp_path / "old.json").write_text('{"processed": 1234}\n')
    return tmp_path


# ----------------------------------------------------------------------------------- finding 2: input is output
INPUT_AS_OUTPUT = {
    "save over the video": ["--video", "{w}/clip.mp4", "--save", "{w}/clip.mp4"],
    "jsonl over the video": ["--video", "{w}/clip.mp4", "--jsonl", "{w}/clip.mp4"],
    "summary over the video": ["--video", "{w}/clip.mp4", "--summary-json", "{w}/clip.mp4"],
    "jsonl over the video by another path": ["--video", "{w}/clip.mp4", "--jsonl", "{w}/images/../clip.mp4"],
    "save over a hard link of the video": ["--video", "{w}/clip.mp4", "--save", "{w}/hard.mp4"],
    "jsonl over a symlink of the video": ["--video", "{w}/clip.mp4", "--jsonl", "{w}/soft.mp4"],
    "jsonl over a file:// video": ["--url", "file://{w}/clip.mp4", "--jsonl", "{w}/clip.mp4"],
    "jsonl over an image": ["--images", "{w}/images", "--jsonl", "{w}/images/001.png"],
    "summary over the manifest": ["--video", "{w}/clip.mp4", "--summary-json", "{b}/manifest.json"],
    "jsonl over the onnx model": ["--video", "{w}/clip.mp4", "--jsonl", "{b}/model.onnx"],
    "save and jsonl on one path": ["--video", "{w}/clip.mp4", "--save", "{w}/o.mp4", "--jsonl", "{w}/o.mp4"],
    "jsonl and summary on one path": ["--video", "{w}/clip.mp4", "--jsonl", "{w}/old.json",
                                      "--summary-json", "{w}/images/../old.json"],
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(INPUT_AS_OUTPUT))
def test_an_input_is_never_an_output(cli, bundle: Path, work: Path, case: str) -> None:
    os.link(work / "clip.mp4", work / "hard.mp4")
    (work / "soft.mp4").symlink_to(work / "clip.mp4")
    before = snapshot(work, bundle)
    args = [a.format(w=work, b=bundle) for a in INPUT_AS_OUTPUT[case]]
    code, out, err = cli("run", "--model", bundle, *args, *RUN)
    line = one_error(code, err)
    assert code == 2 and "an input is never an output" in line, (case, line)
    assert snapshot(work, bundle) == before and out == ""


def test_the_input_checks_pass_distinct_paths(cli, bundle: Path, work: Path) -> None:
    """The checks can fail: an output beside the inputs (images folder, video) is written."""
    code, _, err = cli("run", "--model", bundle, "--images", work / "images", "--jsonl", work / "images" / "d.jsonl",
                       "--summary-json", work / "s.json", *RUN)  # fmt: skip
    assert code == 0, err
    assert len((work / "images" / "d.jsonl").read_text().splitlines()) == 2
    assert json.loads((work / "s.json").read_text())["processed"] == 2


# ------------------------------------------------------------- finding 3: outputs open only after validation
def _corrupt_bundle(bundle: Path, work: Path) -> Path:
    bad = Path(shutil.copytree(bundle, work / "bad_bundle"))
    for model in [*bad.glob("*.bin"), *bad.glob("*.onnx")]:
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0xFF
        model.write_bytes(bytes(data))
    return bad


FAILED_STARTS = {
    "missing video": (["--video", "{w}/missing.mp4"], 6, "not found"),
    "corrupt bundle": (["--model", "{bad}", "--video", "{w}/clip.mp4"], 5, "sha256 mismatch"),
    "undecodable video": (["--video", "{w}/cut.mp4"], 6, "can't decode"),
    "empty image folder": (["--images", "{w}/empty"], 6, "has no images"),
    "unknown device": (["--video", "{w}/clip.mp4", "--device", "NPU.9"], 2, "NPU.9"),
}


@pytest.mark.parametrize("case", sorted(FAILED_STARTS))
def test_old_outputs_survive_a_failed_start(cli, bundle: Path, work: Path, case: str) -> None:
    (work / "cut.mp4").write_bytes((work / "clip.mp4").read_bytes()[:3000])
    (work / "empty").mkdir()
    bad = _corrupt_bundle(bundle, work) if case == "corrupt bundle" else bundle
    before = snapshot(work)
    args, expected, match = FAILED_STARTS[case]
    args = [a.format(w=work, bad=bad) for a in args]
    if "--model" not in args:
        args = ["--model", str(bundle), *args]
    code, _, err = cli("run", *args, "--jsonl", work / "old.jsonl", "--save", work / "old.mp4",
                       "--summary-json", work / "old.json", *RUN)  # fmt: skip
    line = one_error(code, err)
    assert code == expected and match.lower() in line.lower(), (case, code, line)
    assert snapshot(work) == before  # byte for byte, and no partial file left behind


def test_a_good_run_replaces_the_old_outputs_and_cleans_a_killed_runs_leftover(cli, bundle: Path, work: Path) -> None:
    dead = work / ".old.mp4.999999999.partial.mp4"  # a pid that can't exist: a killed run's leftover
    alive = work / f".old.mp4.{os.getppid()}.partial.mp4"  # a running process's: not touched
    dead.write_bytes(b"half a video")
    alive.write_bytes(b"being written")
    code, _, err = cli("run", "--model", bundle, "--video", work / "clip.mp4", "--jsonl", work / "old.jsonl",
                       "--save", work / "old.mp4", "--summary-json", work / "old.json", *RUN)  # fmt: skip
    assert code == 0, err
    assert count_video_frames(work / "old.mp4") == 12 and len((work / "old.jsonl").read_text().splitlines()) == 12
    assert json.loads((work / "old.json").read_text())["processed"] == 12
    assert not dead.exists() and alive.exists()
    assert sorted(p.name for p in work.glob(".*")) == [alive.name]


# ------------------------------------------------------------------------------ finding 4: a full disk
def test_jsonl_on_dev_full_exits_7_naming_the_path(cli, bundle: Path, work: Path) -> None:
    before = snapshot(work)
    code, _, err = cli("run", "--model", bundle, "--video", work / "clip.mp4", "--jsonl", "/dev/full", *RUN)
    line = error_after_start(err)
    assert code == 7 and "/dev/full" in line and "No space left on device" in line, line
    assert snapshot(work) == before


def dev_full_rdev() -> int:
    """/dev/full's device number, after checking that it is still the character device (1, 7)."""
    st = os.lstat("/dev/full")
    assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 7), "/dev/full replaced"
    return st.st_rdev


def test_summary_on_dev_full_exits_7_and_keeps_the_device(cli, bundle: Path, work: Path) -> None:
    before, dev = snapshot(work), sorted(os.listdir("/dev"))
    code, _, err = cli("run", "--model", bundle, "--video", work / "clip.mp4", "--summary-json", "/dev/full", *RUN)
    line = error_after_start(err)
    assert code == 7 and "--summary-json /dev/full" in line and "No space left on device" in line, line
    dev_full_rdev()
    assert sorted(os.listdir("/dev")) == dev and snapshot(work) == before  # no partial file left in /dev


def test_save_on_a_device_or_fifo_is_refused_before_anything_opens(cli, bundle: Path, work: Path) -> None:
    os.mkfifo(work / "pipe.mp4")
    for target, kind in (("/dev/full", "a character device"), (work / "pipe.mp4", "a FIFO")):
        code, _, err = cli("run", "--model", bundle, "--video", work / "clip.mp4", "--save", target, *RUN)
        line = one_error(code, err)
        assert code == 7 and f"--save {target}: it is {kind}, not a file" in line, line
    dev_full_rdev()
    assert stat.S_ISFIFO(os.lstat(work / "pipe.mp4").st_mode)


def test_summary_and_jsonl_are_written_into_a_fifo(cli, bundle: Path, work: Path) -> None:
    """A FIFO (e.g. ``--summary-json >(jq .)``) gets the text and stays a FIFO; a rename would have replaced it."""
    got: dict[str, bytes] = {}
    readers = []
    for name in ("summary", "jsonl"):
        os.mkfifo(work / name)
        readers.append(threading.Thread(target=lambda n=name: got.update({n: (work / n).read_bytes()}), daemon=True))
        readers[-1].start()
    code, _, err = cli("run", "--model", bundle, "--images", work / "images", "--summary-json", work / "summary",
                       "--jsonl", work / "jsonl", *RUN)  # fmt: skip
    assert code == 0, err
    for reader in readers:  # each has read to the writer's close; let it store what it read
        reader.join(timeout=10)
    for name in ("summary", "jsonl"):
        assert stat.S_ISFIFO(os.lstat(work / name).st_mode), name
    assert json.loads(got["summary"])["processed"] == 2
    assert [json.loads(row)["frame"] for row in got["jsonl"].splitlines()] == [0, 1]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 200 KiB tmpfs, filled up to its last page. Mounting needs root (as in CI): no mount is a failure."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.fail(f"can't mount a 200k tmpfs for the full-disk test (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def _fill(disk: Path, leave: int = 4096) -> None:
    stat = os.statvfs(disk)
    (disk / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - leave))


def test_jsonl_on_a_full_disk_keeps_complete_lines(cli, bundle: Path, work: Path, small_disk: Path) -> None:
    _fill(small_disk)
    jsonl = small_disk / "d.jsonl"
    code, _, err = cli("run", "--model", bundle, "--video", work / "clip.mp4", "--loop", "--max-frames", "400",
                       "--min-score", "0", "--jsonl", jsonl, *RUN)  # fmt: skip
    line = error_after_start(err)
    assert code == 7 and str(jsonl) in line and "No space left on device" in line, line
    text = jsonl.read_text()
    records = [json.loads(row) for row in text.splitlines()]  # every line whole
    assert text.endswith("\n") and 0 < len(records) < 400 and [r["frame"] for r in records] == list(range(len(records)))
    assert f"its {len(records)} complete lines are kept" in line


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_a_video_that_does_not_fit_is_removed(cli, bundle: Path, work: Path, small_disk: Path, suffix: str) -> None:
    old = write_video(small_disk / f"old{suffix}", 3)
    _fill(small_disk)
    before = snapshot(small_disk)
    code, _, err = cli("run", "--model", bundle, "--video", work / "clip.mp4", "--loop", "--max-frames", "200",
                       "--save", old, *RUN)  # fmt: skip
    line = error_after_start(err)
    assert code == 7 and f"can't write video {old}" in line, line
    assert snapshot(small_disk) == before  # the old video whole, and the partial one gone
    assert count_video_frames(old) == 3


def test_an_output_under_a_file_fails_before_the_model_loads(cli, bundle: Path, work: Path) -> None:
    before = snapshot(work)
    code, _, err = cli("run", "--model", bundle, "--video", work / "clip.mp4", "--jsonl", work / "old.json" / "d",
                       *RUN)  # fmt: skip
    line = one_error(code, err)
    assert code == 7 and "is not a writable folder" in line and str(work / "old.json" / "d") in line, line
    code, _, err = cli("run", "--model", bundle, "--video", work / "clip.mp4", "--save", work / "images", *RUN)
    assert code == 7 and "it is a folder" in one_error(code, err)
    assert snapshot(work) == before


# ----------------------------------------------------------------------------------------- numeric ranges
BAD_NUMBERS = [
    ("--threads", "0"), ("--threads", "-3"), ("--threads", "1.5"), ("--nireq", "0"), ("--nireq", "100000"),
    ("--fps", "0"), ("--fps", "-1"), ("--fps", "nan"), ("--width", "0"), ("--height", "-1"),
    ("--max-frames", "0"), ("--max-frames", "-1"), ("--duration", "0"), ("--duration", "-2"),
    ("--duration", "inf"), ("--min-score", "-0.1"), ("--min-score", "1.5"), ("--min-score", "nan"),
    ("--stats-every", "-1"), ("--stats-every", "inf"), ("--camera", "-1"), ("--camera", "x"),
]  # fmt: skip


@pytest.mark.parametrize(("option", "value"), BAD_NUMBERS)
def test_bad_numbers_are_one_line_usage_errors(cli, bundle: Path, work: Path, option: str, value: str) -> None:
    before = snapshot(work)
    source = [] if option == "--camera" else ["--video", work / "clip.mp4"]
    code, out, err = cli("run", "--model", bundle, *source, f"{option}={value}", "--jsonl", work / "old.jsonl")
    line = one_error(code, err)
    assert code == 2 and f"'{option}'" in line and "--help" in line, line
    assert snapshot(work) == before and out == ""


@pytest.mark.parametrize("value", ["", "0x0", "axb", "99999999x99999999", "16385x1", "-5x10", "10x", "1.5x2",
                                   "nanxnan", "64by48", "\u0664x4"])  # fmt: skip
def test_a_bad_stdin_raw_size_is_a_usage_error(cli, bundle: Path, work: Path, value: str) -> None:
    before = snapshot(work)
    code, out, err = cli("run", "--model", bundle, "--stdin-raw", value, "--jsonl", work / "old.jsonl", *RUN)
    line = one_error(code, err)
    assert code == 2 and "'--stdin-raw'" in line and "--help" in line, line
    assert snapshot(work) == before and out == ""


def test_a_good_stdin_raw_size_without_a_stream_is_a_source_error(cli, bundle: Path, work: Path, monkeypatch) -> None:
    """Well-formed (16384 is the largest side) but stdin is a terminal: the source's error, exit 6."""
    tty = type("Terminal", (), {"isatty": lambda self: True})()
    monkeypatch.setattr(sys, "stdin", tty)
    before = snapshot(work)
    code, _, err = cli("run", "--model", bundle, "--stdin-raw", "16384X1", "--jsonl", work / "old.jsonl", *RUN)
    line = one_error(code, err)
    assert code == 6 and "stdin is a terminal" in line, line
    assert snapshot(work) == before


def test_every_numeric_option_of_run_has_a_range() -> None:
    import click

    from lighthead_edge.runner_cli import run_cmd

    numbers = (click.types.IntParamType, click.types.FloatParamType)
    numeric = {p.name for p in run_cmd.params if isinstance(p.type, numbers)}
    ranged = {p.name for p in run_cmd.params if isinstance(p.type, (click.IntRange, click.FloatRange))}
    assert numeric == ranged == {"camera", "width", "height", "fps", "threads", "nireq", "max_frames", "duration",
                                 "min_score", "stats_every"}  # fmt: skip
    assert {option.lstrip("-").replace("-", "_") for option, _ in BAD_NUMBERS} == ranged
