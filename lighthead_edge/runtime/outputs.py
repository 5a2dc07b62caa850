"""Where the runner's results go: an annotated video, JSON lines, a window. numpy + OpenCV only.

JSONL: one object per processed frame, each line written whole in one call, so a reader (or a crash) never sees half
a frame; on a full disk the file is cut back to its last complete line::

    {"frame": 12, "timestamp": 0.48, "width": 640, "height": 480,
     "detections": [{"box": [x1, y1, x2, y2], "score": 0.91, "label": 1, "class": "tree"}]}

``box`` is in the frame's own pixels, ``label`` 1..C indexes the bundle's class names.

Nothing the user had is lost: the video is written to a hidden ``.NAME.PID.partial.EXT`` beside ``--save`` and moved
over it only once it plays (otherwise removed, :class:`OutputError`); the JSONL is opened (truncated) only after the
runner has opened the source and loaded the bundle; :func:`write_atomic` replaces a file in one rename. A path that
exists but is no regular file (a device such as ``/dev/full`` or ``/dev/stdout``, a FIFO) is never replaced by a
rename: JSON is written into it in place, a video refused (:func:`special_kind`).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lighthead_edge.data.transforms import letterbox
from lighthead_edge.errors import OutputError
from lighthead_edge.runtime.detector import Detections


class OutputClosed(Exception):
    """The reader of an output went away (e.g. ``--jsonl - | head``): the run ends quietly."""


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))  # fmt: skip


def special_kind(path: str | Path) -> str | None:
    """What ``path`` (its symlinks followed) is when it exists but is no regular file, e.g. "a character device";
    None for a regular file or nothing there. Such a path is never replaced by a rename."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return next((name for is_kind, name in _KINDS if is_kind(mode)), "no regular file")


def check_writable(path: str | Path, option: str, *, file_only: bool = False) -> None:
    """Raise :class:`OutputError` now, creating nothing, when ``path`` can't be written: a folder, a read-only file,
    no writable folder above it, or with ``file_only`` (a video, which needs a file it can seek in) anything but a
    regular file (checked before the model loads, so a typo fails at once)."""
    path = Path(path).absolute()
    kind = special_kind(path)
    if kind == "a folder" or (kind and file_only):
        raise OutputError(f"can't write {option} {path}: it is {kind}" + (", not a file" if file_only else ""))
    ancestor = next(p for p in path.parents if p.exists())
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"can't write {option} {path}: {ancestor} is not a writable folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"can't write {option} {path}: permission denied")


def partial_path(path: Path) -> Path:
    """Where ``path`` is written before it is moved into place: a hidden name in the same folder, with this
    process's id, keeping the suffix (OpenCV picks the container by it)."""
    return path.with_name(f".{path.name}.{os.getpid()}.partial{path.suffix}")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a live writer's partial files are left alone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process
    return True


def swap_directory(new: Path, target: Path) -> None:
    """Put the folder ``new`` in place of the existing folder ``target``: ``target`` is renamed aside to a unique
    ``.NAME.PID.*.old`` first (a folder can't be renamed onto a non-empty one), put back if the rename of ``new``
    fails, and deleted only once ``new`` is in place. A kill between the two renames leaves the ``.old`` folder, which
    the next write to ``target`` puts back (``lighthead_edge.export.bundle.remove_leftovers``)."""
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".old", dir=target.parent))
    old.rmdir()  # only the unique name is wanted
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def remove_leftovers(path: Path) -> None:
    """Remove the partial files of earlier writes to ``path`` whose process is gone (a killed run)."""
    for old in path.parent.glob(f".{glob.escape(path.name)}.*.partial{glob.escape(path.suffix)}"):
        pid = old.name[len(path.name) + 2 :].split(".")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            with contextlib.suppress(OSError):
                old.unlink()


def write_atomic(path: str | Path, text: str, option: str) -> None:
    """Write ``text`` to ``path`` through a partial file and one rename: the old file stays whole until then. A path
    that is no regular file (:func:`special_kind`: ``/dev/full``, ``/dev/stdout``, a FIFO) is written in place."""
    path = Path(path)
    if special_kind(path) is not None:
        try:
            with open(path, "w", encoding="utf-8") as file:
                file.write(text)
        except OSError as exc:
            raise OutputError(f"can't write {option} {path}: {exc.strerror}") from None
        return
    tmp = partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path)
        with open(tmp, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(f"can't write {option} {path}: {exc.strerror}") from None


def detections_record(
    index: int, timestamp: float, frame_hw: tuple[int, int], detections: Detections, min_score: float = 0.0,
    source: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The JSONL object of one frame (see the module docstring); detections below ``min_score`` are left out.
    ``source``: the name of the frame's source, recorded as ``"source"`` (a run of several sources)."""
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
    head = {} if source is None else {"source": source}
    return {**head, "frame": int(index), "timestamp": round(float(timestamp), 6), "width": int(frame_hw[1]),
            "height": int(frame_hw[0]), "detections": items}  # fmt: skip


class JsonlSink:
    """JSON lines to ``path``, or to standard output for ``"-"``. Each line goes out in one write; when a write
    fails (a full disk), the file is cut back to its last complete line and :class:`OutputError` names the path."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._stdout = self.path == "-"
        self.lines = self._good = 0  # lines and bytes written whole
        self._fd = -1
        if not self._stdout:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            except OSError as exc:
                raise OutputError(f"can't write --jsonl {self.path}: {exc.strerror}") from None

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        if self._stdout:
            self._write_stdout(line)
        else:
            self._write_file(line.encode("utf-8"))
        self.lines += 1

    def _write_stdout(self, line: str) -> None:
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except BrokenPipeError:
            # Point stdout at /dev/null so the interpreter's final flush doesn't complain on the closed pipe.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise OutputClosed("the JSONL reader closed its end") from None
        except OSError as exc:
            raise OutputError(f"can't write --jsonl to standard output: {exc.strerror}") from None

    def _write_file(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:  # one call unless the disk fills up in the middle of the line
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            with contextlib.suppress(OSError):  # a device such as /dev/full can't be truncated: nothing was kept
                os.ftruncate(self._fd, self._good)
            self.close()
            raise OutputError(f"can't write --jsonl {self.path}: {exc.strerror} (its {self.lines} complete lines "
                              "are kept)") from None  # fmt: skip
        self._good += len(data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def fourcc_for(path: str | Path) -> str:
    """The OpenCV writer codec for a file name: MJPG for .avi, mp4v otherwise (H.264 writers are rarely built in)."""
    return "MJPG" if Path(path).suffix.lower() == ".avi" else "mp4v"


def plays(path: Path, frames: int) -> bool:
    """Whether the video at ``path`` opens, announces ``frames`` frames and decodes its last one. OpenCV's writers
    fail silently on a full disk: an MP4 without its index won't open, an AVI announces no frames."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened() or int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) != frames:
            return False
        cap.set(cv2.CAP_PROP_POS_FRAMES, frames - 1)
        return bool(cap.read()[0])
    finally:
        cap.release()


class VideoSink:
    """An annotated video at ``path``, opened at the first frame's size; later frames of another size (a stream
    that came back at a new resolution) are letterboxed into it. It is written to :func:`partial_path` and
    :meth:`close` moves it over ``path`` once it plays; one that doesn't is removed (:class:`OutputError`)."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path, self.fps = Path(path), float(fps) if fps and fps > 0 else 25.0
        self.partial = partial_path(self.path)
        self.size: tuple[int, int] | None = None  # (w, h)
        self._writer: cv2.VideoWriter | None = None
        self.frames = 0
        check_writable(self.path, "--save", file_only=True)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"can't create the folder of --save {self.path}: {exc.strerror}") from None
        remove_leftovers(self.path)

    def _open(self, width: int, height: int) -> None:
        writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*fourcc_for(self.path)), self.fps,
                                 (width, height))  # fmt: skip
        if not writer.isOpened():
            self._remove_partial()
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

    def _remove_partial(self) -> None:
        with contextlib.suppress(OSError):
            self.partial.unlink()

    def close(self) -> None:
        """Finalize the file and move it into place; without a frame written, ``path`` is left as it was."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if not plays(self.partial, self.frames):
            self._remove_partial()
            raise OutputError(f"can't write video {self.path}: what OpenCV wrote does not play (a full disk?); "
                              "the path is left as it was")  # fmt: skip
        try:
            os.replace(self.partial, self.path)
        except OSError as exc:
            self._remove_partial()
            raise OutputError(f"can't write video {self.path}: {exc.strerror}") from None


class DisplaySink:
    """A window, where there is a display and an OpenCV with GUI support; otherwise ``available`` is False and
    ``reason`` says why (the runner then goes on without it)."""

    WINDOW = "lighthead-edge"

    def __init__(self, name: str | None = None) -> None:
        self.window = self.WINDOW if name is None else f"{self.WINDOW}: {name}"
        self.available, self.reason = False, ""
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            self.reason = "no display (DISPLAY is not set)"
            return
        try:
            cv2.namedWindow(self.window, cv2.WINDOW_NORMAL)
        except cv2.error:
            self.reason = "this OpenCV has no GUI support (opencv-python-headless); install opencv-python for --show"
            return
        self.available = True

    def show(self, image: np.ndarray) -> bool:
        """Show ``image``; False once the user pressed q or Esc."""
        if not self.available:
            return True
        cv2.imshow(self.window, image)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        if self.available:
            cv2.destroyWindow(self.window)
