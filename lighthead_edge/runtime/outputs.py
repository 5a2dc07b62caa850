"""Where the runner's results go: an annotated video, JSON lines, a window. numpy + OpenCV only.

JSONL: one object per processed frame, flushed line by line so a reader (or a crash) never sees half a frame::

    {"frame": 12, "timestamp": 0.48, "width": 640, "height": 480,
     "detections": [{"box": [x1, y1, x2, y2], "score": 0.91, "label": 1, "class": "tree"}]}

``box`` is in the frame's own pixels, ``label`` 1..C indexes the bundle's class names.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np

from lighthead_edge.data.transforms import letterbox
from lighthead_edge.errors import LightheadError
from lighthead_edge.runtime.detector import Detections


class OutputError(LightheadError):
    """An output that can't be written: no such folder, no permission, a video codec OpenCV lacks."""

    exit_code = 7


class OutputClosed(Exception):
    """The reader of an output went away (e.g. ``--jsonl - | head``): the run ends quietly."""


def detections_record(
    index: int, timestamp: float, frame_hw: tuple[int, int], detections: Detections, min_score: float = 0.0
) -> dict[str, Any]:
    """The JSONL object of one frame (see the module docstring); detections below ``min_score`` are left out."""
    names = detections.class_names
    items = [
        {
            "box": [round(float(v), 2) for v in box],
            "score": round(float(score), 4),
            "label": int(label),
            "class": names[int(label) - 1] if 0 < int(label) <= len(names) else str(int(label)),
        }  # fmt: skip
        for box, score, label in zip(detections.boxes, detections.scores, detections.labels)
        if score >= min_score
    ]
    return {"frame": int(index), "timestamp": round(float(timestamp), 6), "width": int(frame_hw[1]),
            "height": int(frame_hw[0]), "detections": items}  # fmt: skip


class JsonlSink:
    """JSON lines to ``path``, or to standard output for ``"-"``; every line is flushed as it is written."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._stdout = self.path == "-"
        if self._stdout:
            self._file: TextIO = sys.stdout
        else:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in close()
            except OSError as exc:
                raise OutputError(f"can't write --jsonl {self.path}: {exc.strerror}") from None
        self.lines = 0

    def write(self, record: dict[str, Any]) -> None:
        try:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._file.flush()
        except BrokenPipeError:
            # Point stdout at /dev/null so the interpreter's final flush doesn't complain on the closed pipe.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise OutputClosed("the JSONL reader closed its end") from None
        self.lines += 1

    def close(self) -> None:
        if not self._stdout:
            self._file.close()


def fourcc_for(path: str | Path) -> str:
    """The OpenCV writer codec for a file name: MJPG for .avi, mp4v otherwise (H.264 writers are rarely built in)."""
    return "MJPG" if Path(path).suffix.lower() == ".avi" else "mp4v"


class VideoSink:
    """An annotated video at ``path``, opened at the first frame's size; later frames of another size (a stream
    that came back at a new resolution) are letterboxed into it. :meth:`close` finalizes the file."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path, self.fps = Path(path), float(fps) if fps and fps > 0 else 25.0
        self.size: tuple[int, int] | None = None  # (w, h)
        self._writer: cv2.VideoWriter | None = None
        self.frames = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"can't create the folder of --save {self.path}: {exc.strerror}") from None

    def _open(self, width: int, height: int) -> None:
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc_for(self.path)), self.fps,
                                 (width, height))  # fmt: skip
        if not writer.isOpened():
            raise OutputError(f"can't write video {self.path} ({fourcc_for(self.path)}); use a .mp4 or .avi path "
                              "in a writable folder")  # fmt: skip
        self._writer, self.size = writer, (width, height)

    def write(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if self._writer is None:
            self._open(w, h)
        if (w, h) != self.size:
            image, _ = letterbox(image, (self.size[1], self.size[0]), pad_bgr=(0, 0, 0))
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class DisplaySink:
    """A window, where there is a display and an OpenCV with GUI support; otherwise ``available`` is False and
    ``reason`` says why (the runner then goes on without it)."""

    WINDOW = "lighthead-edge"

    def __init__(self) -> None:
        self.available, self.reason = False, ""
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            self.reason = "no display (DISPLAY is not set)"
            return
        try:
            cv2.namedWindow(self.WINDOW, cv2.WINDOW_NORMAL)
        except cv2.error:
            self.reason = "this OpenCV has no GUI support (opencv-python-headless); install opencv-python for --show"
            return
        self.available = True

    def show(self, image: np.ndarray) -> bool:
        """Show ``image``; False once the user pressed q or Esc."""
        if not self.available:
            return True
        cv2.imshow(self.WINDOW, image)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        if self.available:
            cv2.destroyWindow(self.WINDOW)
