"""Helpers of the GStreamer tests (imported by name: pytest puts tests/embed_gst on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SITE_PACKAGES = sysconfig.get_paths()["purelib"]  # the venv's: its numpy, OpenCV and engines for the element
SYSTEM_PYTHON = "/usr/bin/python3"
WIDTH, HEIGHT, FRAMES = 160, 120, 30
DECODE = "decodebin ! videoconvert ! video/x-raw,format=BGR"  # the element's usual input chain


def without_venvs(path: str) -> str:
    """PATH without venv bin folders (a folder whose parent holds pyvenv.cfg)."""
    return os.pathsep.join(d for d in path.split(os.pathsep) if d and not (Path(d).parent / "pyvenv.cfg").is_file())


def run(cmd: list[str], env: dict[str, str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """Run ``cmd`` to completion, text output captured."""
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, **kwargs)


def gst_ok(env: dict[str, str], pipeline: str, *options: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``gst-launch-1.0 OPTIONS PIPELINE`` and assert it succeeded."""
    proc = run(["gst-launch-1.0", *options, *pipeline.split()], env, timeout=timeout)
    assert proc.returncode == 0, f"gst-launch-1.0 {pipeline} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def read_raw(path: Path, width: int, height: int) -> np.ndarray:
    """Raw bgr24 frames of a file: ndarray[n, height, width, 3]."""
    data = np.fromfile(path, dtype=np.uint8)
    assert data.size % (width * height * 3) == 0, f"{path}: {data.size} bytes is no whole number of frames"
    return data.reshape(-1, height, width, 3)


def assert_same_detections(got: list[dict], want: list[dict], where: str) -> None:
    """Two frames' JSONL detections agree: same count and labels, boxes within 0.5 px, scores within 1e-4."""
    assert len(got) == len(want), f"{where}: {len(got)} detections, the Python runtime has {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        assert g["label"] == w["label"] and g["class"] == w["class"], f"{where} #{k}: {g} vs {w}"
        assert np.abs(np.subtract(g["box"], w["box"])).max() <= 0.5, f"{where} #{k}: {g['box']} vs {w['box']}"
        assert abs(g["score"] - w["score"]) <= 1e-4, f"{where} #{k}: {g['score']} vs {w['score']}"


def assert_jsonl_matches(lines: list[dict], want: list[list[dict]], size: tuple[int, int] = (WIDTH, HEIGHT)) -> None:
    """One JSONL record per frame, numbered 0.., of the frame's size, with the runtime's detections."""
    assert [r["frame"] for r in lines] == list(range(len(want))), "one line per frame, in order, numbered from 0"
    for record, dets in zip(lines, want):
        assert (record["width"], record["height"]) == size
        assert_same_detections(record["detections"], dets, f"frame {record['frame']}")
