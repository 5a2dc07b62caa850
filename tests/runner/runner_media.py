"""Generated media for the runner tests (imported by name: pytest puts tests/runner on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np


def make_frame(i: int, width: int = 160, height: int = 120) -> np.ndarray:
    """A deterministic BGR test frame: a gradient with a bright square that moves with ``i``."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    image = np.broadcast_to((x * 0.5 + y * 0.3 + i * 3) % 256, (height, width, 3)).astype(np.uint8).copy()
    side = max(8, min(width, height) // 4)
    x0 = (i * 7) % max(1, width - side)
    cv2.rectangle(image, (x0, height // 3), (x0 + side, height // 3 + side), (255, 255, 255), -1)
    return image


def write_video(path: Path, frames: int, width: int = 160, height: int = 120, fps: float = 20.0) -> Path:
    """A video written by OpenCV: mp4v for .mp4, MJPG for .avi."""
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), path
    for i in range(frames):
        writer.write(make_frame(i, width, height))
    writer.release()
    return path


def count_video_frames(path: Path) -> int:
    """Frames that actually decode (not the header's count)."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def runner_command(*args: object) -> list[str]:
    """``lighthead-edge run ARGS`` through this interpreter, at one inference thread unless ARGS say otherwise."""
    extra = [] if "--threads" in map(str, args) else ["--threads", "1"]
    return [sys.executable, "-m", "lighthead_edge.cli", "run", *map(str, args), *extra]
