"""``lighthead-edge run`` as a process: raw frames on stdin, SIGINT/SIGTERM, and one-line errors with exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from runner_media import count_video_frames, make_frame, runner_command


def error_lines(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode().splitlines() if line.strip()]


def test_stdin_raw_to_jsonl_on_stdout(run_cli, tiny_bundle: Path, tmp_path: Path) -> None:
    frames = [make_frame(i, 64, 48) for i in range(12)]
    data = b"".join(f.tobytes() for f in frames) + b"\x00" * 1000  # and a short last frame
    proc = run_cli("--model", tiny_bundle, "--stdin-raw", "64x48", "--no-drop", "--jsonl", "-", "--min-score", "0",
                   "--summary-json", tmp_path / "s.json", input=data)  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    records = [json.loads(line) for line in proc.stdout.decode().splitlines()]  # stdout holds nothing else
    summary = json.loads((tmp_path / "s.json").read_text())
    assert [r["frame"] for r in records] == list(range(12)) and records[0]["width"] == 64
    assert (summary["frames_read"], summary["processed"], summary["corrupt"]) == (12, 12, 1)


def test_stdin_raw_live_drops_but_accounts_for_every_frame(run_cli, tiny_bundle: Path, tmp_path: Path) -> None:
    data = b"".join(make_frame(i, 64, 48).tobytes() for i in range(30))
    proc = run_cli("--model", tiny_bundle, "--stdin-raw", "64x48", "--summary-json", tmp_path / "s.json", input=data)
    assert proc.returncode == 0, proc.stderr.decode()
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames_read"] == 30 and summary["processed"] + summary["dropped"] == 30 and summary["processed"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_finishes_cleanly(isolated_env, tiny_bundle: Path, video_mp4: Path, tmp_path: Path, sig) -> None:
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    cmd = runner_command("--model", tiny_bundle, "--video", video_mp4, "--loop", "--save", out, "--jsonl", jsonl,
                         "--summary-json", tmp_path / "s.json")  # fmt: skip
    proc = subprocess.Popen(cmd, env=isolated_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not jsonl.exists() or len(jsonl.read_bytes().splitlines()) < 50):
        time.sleep(0.05)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr.decode()
    lines = jsonl.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is whole
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["stopped_by"] == sig.name and len(records) == summary["processed"] >= 50
    assert [r["frame"] for r in records] == list(range(len(records)))
    assert count_video_frames(out) == len(records)  # the MP4 was finalized: it plays to the last frame
    assert "Traceback" not in stderr.decode()


def test_missing_camera_one_line_error_within_two_seconds(run_cli, tiny_bundle: Path) -> None:
    start = time.perf_counter()
    proc = run_cli("--model", tiny_bundle, "--camera", "9")
    assert time.perf_counter() - start < 2.0
    assert proc.returncode == 6
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: camera 9 not found"), lines


@pytest.mark.parametrize(
    ("args", "code", "match"),
    [
        (["--video", "missing.mp4"], 6, "not found"),
        (["--video", "x.mp4", "--camera", "9"], 6, "none of the 2 sources could be opened: camera9: camera 9"),
        ([], 2, "no usable source; give --camera N"),
        (["--stdin-raw", "64by48"], 2, "WIDTHxHEIGHT"),
        (["--images", "."], 6, "no images"),
    ],
)
def test_usage_errors(run_cli, tiny_bundle: Path, tmp_path: Path, args: list[str], code: int, match: str) -> None:
    args = [str(tmp_path / a) if a.endswith(".mp4") else (str(tmp_path) if a == "." else a) for a in args]
    proc = run_cli("--model", tiny_bundle, *args)
    lines = error_lines(proc.stderr)
    assert proc.returncode == code and len(lines) == 1 and match in lines[0], lines


def test_no_bundle_and_truncated_mp4(run_cli, video_mp4: Path, tiny_bundle: Path, tmp_path: Path) -> None:
    proc = run_cli("--video", video_mp4)  # no --model, nothing remembered (isolated cache)
    assert proc.returncode == 5 and "no --model given" in proc.stderr.decode()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(video_mp4.read_bytes()[:5000])
    proc = run_cli("--model", tiny_bundle, "--video", cut)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 6 and len(lines) == 1 and "truncated" in lines[0], lines
