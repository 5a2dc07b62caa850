"""Frame sources for the video runner: a camera, a video file, a stream URL, a folder of images, or raw frames on
standard input. numpy + OpenCV only (no torch).

Every source hands out :class:`Frame` objects from :meth:`Source.read` until it returns ``None`` (the end), and
counts what it had to skip: ``corrupt`` frames (undecodable images, a short last raw frame, a frame a video file
couldn't decode) and ``missing`` ones (frames a truncated file's header announces but that aren't there).

*Live* sources (camera, network stream, stdin) produce frames at their own pace; the pipeline keeps only the newest
of them. File sources (video files, ``file://`` URLs, image folders) are read frame by frame, none dropped.
:class:`Reconnecting` wraps a live source and reopens it with exponential backoff when it drops.
"""

from __future__ import annotations

import enum
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from lighthead_edge.errors import LightheadError

Log = Callable[[str], None]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
STREAM_TIMEOUT_MS = 5000  # a stalled stream fails a read after this long, so --reconnect can act


class SourceError(LightheadError):
    """A frame source that can't be opened: missing camera, unreadable file, unreachable stream, bad raw size."""

    exit_code = 6


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quiet_opencv() -> None:
    """Silence OpenCV's and FFmpeg's own console warnings: the runner reports failures in its own one-line words."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read when a capture is opened
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def redact(url: str) -> str:
    """``url`` without a password, for messages and logs (``rtsp://user:pw@cam/`` -> ``rtsp://user:***@cam/``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``image`` (ndarray[h, w, 3] uint8 BGR) and its ``timestamp`` in seconds (media time for
    video files, Unix time of capture otherwise)."""

    image: np.ndarray
    timestamp: float


def _valid(image: np.ndarray | None) -> bool:
    return image is not None and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 and image.size > 0


class Source:
    """Base class: ``open`` (raises :class:`SourceError`), ``read`` until ``None``, ``close``.

    Attributes:
        name: what to call it in messages.
        live: frames come at the source's pace (drop stale ones) rather than on demand.
        fps: the nominal frame rate, when the source knows it (used for the saved video).
        corrupt, missing, reconnects: counters, see the module docstring.
    """

    name = "source"
    live = False
    fps: float | None = None
    corrupt = 0  # counters: class-level zeros, per-instance once incremented
    missing = 0
    reconnects = 0

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` has succeeded (and :meth:`close` not been called since)."""
        return False

    def open(self) -> None:
        """Open (or reopen) the source; raise :class:`SourceError` with what to do when it can't be."""

    def read(self) -> Frame | None:
        """The next frame, or ``None`` at the end (a live source that drops ends too, unless reconnected)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device, file or connection; the source may be opened again."""

    def interrupt(self) -> None:
        """Ask a waiting :meth:`read` (e.g. a reconnect backoff) to give up soon; called from another thread."""

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _CaptureSource(Source):
    """A ``cv2.VideoCapture`` behind :class:`Source`."""

    def __init__(self) -> None:
        self.cap: cv2.VideoCapture | None = None

    @property
    def is_open(self) -> bool:
        return self.cap is not None

    def _capture(self) -> cv2.VideoCapture:
        raise NotImplementedError

    def _cannot_open(self) -> SourceError:
        return SourceError(f"can't open {self.name}")

    def open(self) -> None:
        self.close()
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            raise self._cannot_open()
        self.cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if 0 < fps < 1000 else self.fps  # some backends report 0 or 90000 when unknown

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    def read(self) -> Frame | None:
        if self.cap is None:
            return None
        ok, image = self.cap.read()
        if ok and _valid(image):
            return Frame(image, time.time())
        return None


class CameraSource(_CaptureSource):
    """A V4L2 / OpenCV camera by index, with optional ``width``/``height``/``fps`` requests (the driver may round)."""

    live = True

    def __init__(self, index: int, width: int | None = None, height: int | None = None, fps: float | None = None):
        super().__init__()
        self.index, self.width, self.height, self.fps = int(index), width, height, fps
        self.name = f"camera {self.index}"

    def _cannot_open(self) -> SourceError:
        return SourceError(f"camera {self.index} can't be opened (busy, or not a capture device); "
                           "try another --camera index, or --video/--url")  # fmt: skip

    def _capture(self) -> cv2.VideoCapture:
        # A missing device is reported before OpenCV is asked: some backends probe for seconds before failing.
        if sys.platform.startswith("linux") and not Path(f"/dev/video{self.index}").exists():
            raise SourceError(f"camera {self.index} not found (no /dev/video{self.index}); list cameras with "
                              "`v4l2-ctl --list-devices`, or use --video/--url/--stdin-raw")  # fmt: skip
        cap = cv2.VideoCapture(self.index)
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, self.width), (cv2.CAP_PROP_FRAME_HEIGHT, self.height),
                            (cv2.CAP_PROP_FPS, self.fps)):  # fmt: skip
            if value:
                cap.set(prop, float(value))
        return cap


class UrlSource(_CaptureSource):
    """A stream through OpenCV's FFmpeg backend: ``rtsp://``, ``http(s)://`` (MJPEG, HLS, ...), ``file://``.

    A ``file://`` URL is read like a video file (every frame); anything else is live. Opening and reading time out
    after :data:`STREAM_TIMEOUT_MS`, so a stalled stream ends (and is reopened with ``--reconnect``) instead of hanging.
    """

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.name = f"stream {redact(url)}"
        self.live = urlsplit(url).scheme.lower() != "file"

    def _cannot_open(self) -> SourceError:
        return SourceError(f"can't open {self.name}: unreachable, refused, or not a video stream; check the URL "
                           "(and credentials), or add --reconnect to keep trying")  # fmt: skip

    def _capture(self) -> cv2.VideoCapture:
        ms = STREAM_TIMEOUT_MS
        return cv2.VideoCapture(
            self.url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        )


class VideoFileSource(_CaptureSource):
    """A video file that OpenCV decodes, read frame by frame, optionally looped.

    A failed read that moves the decoder on is a corrupt frame (skipped, counted); one that doesn't is the end. A
    file that ends before its header's frame count (truncated) counts the difference as ``missing``.
    """

    def __init__(self, path: str | Path, loop: bool = False) -> None:
        super().__init__()
        self.path, self.loop = Path(path), loop
        self.name = f"video {self.path}"
        self.loops = 0
        self._announced = 0

    def _cannot_open(self) -> SourceError:
        return SourceError(f"can't decode {self.path}: not a video OpenCV reads, or truncated (an MP4 cut short "
                           "loses its index); re-encode or re-copy it")  # fmt: skip

    def _capture(self) -> cv2.VideoCapture:
        if not self.path.is_file():
            raise SourceError(f"video {self.path} not found; check the path")
        return cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)

    def open(self) -> None:
        super().open()
        self._announced = max(0, int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)))

    def _read_once(self) -> Frame | None:
        for _ in range(3):  # a few corrupt frames in a row are skipped; a read that doesn't advance is the end
            before = self.cap.get(cv2.CAP_PROP_POS_FRAMES)
            ok, image = self.cap.read()
            if ok and _valid(image):
                return Frame(image, self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
            if self.cap.get(cv2.CAP_PROP_POS_FRAMES) <= before:
                break
            self.corrupt += 1
        self.missing += max(0, self._announced - int(self.cap.get(cv2.CAP_PROP_POS_FRAMES)))
        return None

    def read(self) -> Frame | None:
        if self.cap is None:
            return None
        frame = self._read_once()
        if frame is None and self.loop and self.cap.get(cv2.CAP_PROP_POS_FRAMES) > 0:
            self.open()  # reopening is more reliable than seeking back across codecs and containers
            self.loops += 1
            frame = self._read_once()
        return frame


class ImageFolderSource(Source):
    """The images of a folder (jpg, png, bmp, tif, webp), in name order; undecodable files are skipped and counted."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.name = f"images {self.folder}"
        self._files: list[Path] = []
        self._next = 0

    @property
    def is_open(self) -> bool:
        return bool(self._files)

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"image folder {self.folder} not found; pass a directory of .jpg/.png files")
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self._files:
            raise SourceError(f"{self.folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
        self._next = 0

    def read(self) -> Frame | None:
        while self._next < len(self._files):
            path = self._files[self._next]
            self._next += 1
            try:
                image = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_COLOR)
            except (OSError, cv2.error):
                image = None
            if _valid(image):
                return Frame(image, time.time())
            self.corrupt += 1
        return None


MAX_RAW_SIDE = 16384


def parse_raw_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> ``(640, 480)`` (width, height), each 1..:data:`MAX_RAW_SIDE`. The CLI checks it as the
    option is parsed (a usage error, exit 2); a :class:`SourceSpec` made in code gets a :class:`SourceError`."""
    match = re.fullmatch(r"\s*(\d{1,9})\s*[xX]\s*(\d{1,9})\s*", text, flags=re.ASCII)
    if match is None:
        raise SourceError(f"--stdin-raw wants WIDTHxHEIGHT, e.g. 640x480, got {text!r}")
    w, h = int(match[1]), int(match[2])
    if not (1 <= w <= MAX_RAW_SIDE and 1 <= h <= MAX_RAW_SIDE):
        raise SourceError(f"--stdin-raw size {w}x{h} is out of range (width and height 1..{MAX_RAW_SIDE})")
    return w, h


class RawStreamSource(Source):
    """Raw ``bgr24`` frames of a fixed ``width x height`` on a byte stream (standard input by default), as written
    by ``ffmpeg -f rawvideo -pix_fmt bgr24 -`` or a GStreamer ``fdsink``. A short last frame is counted corrupt."""

    live = True

    def __init__(self, width: int, height: int, stream: BinaryIO | None = None, fps: float | None = None) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.stream = stream
        self.name = f"raw {width}x{height} bgr24 on {'stdin' if stream is None else 'a stream'}"

    @property
    def is_open(self) -> bool:
        return self.stream is not None

    def open(self) -> None:
        if self.stream is None:
            if sys.stdin is None or sys.stdin.isatty():
                raise SourceError(
                    "--stdin-raw reads raw bgr24 frames from a pipe, but stdin is a terminal; e.g. "
                    "ffmpeg -i IN -f rawvideo -pix_fmt bgr24 - | lighthead-edge run --stdin-raw WxH"
                )
            self.stream = sys.stdin.buffer

    def read(self) -> Frame | None:
        size = self.width * self.height * 3
        buffer = bytearray(size)
        view, got = memoryview(buffer), 0
        while got < size:
            n = self.stream.readinto(view[got:])
            if not n:
                break
            got += n
        if got < size:
            self.corrupt += int(got > 0)
            return None
        return Frame(np.frombuffer(buffer, dtype=np.uint8).reshape(self.height, self.width, 3), time.time())


class Reconnecting(Source):
    """Reopens ``inner`` whenever it ends or fails to open, waiting ``initial``, 2x, 4x ... up to ``maximum`` seconds
    between tries (reset after a frame arrives). Frames of a new size after a reconnect are passed on as they are.

    It only ends when :meth:`interrupt` is called (the pipeline does so when it stops).
    """

    def __init__(self, inner: Source, *, initial: float = 0.5, maximum: float = 30.0, log: Log = _stderr) -> None:
        self.inner, self.initial, self.maximum, self.log = inner, initial, maximum, log
        self.name, self.live, self.fps = inner.name, inner.live, inner.fps
        self._stop = threading.Event()
        self._open = self._tried = False
        self._delay = initial

    @property
    def is_open(self) -> bool:
        return self._tried  # a failed first open is retried by read(), not raised

    @property
    def corrupt(self) -> int:  # the inner source counts; these mirror it
        return self.inner.corrupt

    @property
    def missing(self) -> int:
        return self.inner.missing

    def open(self) -> None:
        self._tried = True
        try:
            self.inner.open()
            self._open, self.fps = True, self.inner.fps or self.fps
        except SourceError:
            self.log(f"warning: can't open {self.inner.name} yet; retrying in {self._delay:.1f} s (--reconnect)")

    def _reopen(self) -> bool:
        while not self._stop.wait(self._delay):
            self._delay = min(self._delay * 2, self.maximum)
            try:
                self.inner.open()
            except SourceError:
                self.log(f"warning: {self.inner.name} still unavailable; next try in {self._delay:.1f} s")
                continue
            self._open = True
            self.reconnects += 1
            self.log(f"reconnected to {self.inner.name} (reconnect {self.reconnects})")
            return True
        return False

    def read(self) -> Frame | None:
        while not self._stop.is_set():
            if not self._open and not self._reopen():
                break
            frame = self.inner.read()
            if frame is not None:
                self._delay = self.initial
                return frame
            self.inner.close()
            self._open = False
            if not self._stop.is_set():
                self.log(f"warning: {self.inner.name} dropped; reconnecting in {self._delay:.1f} s")
        return None

    def close(self) -> None:
        self.inner.close()
        self._open = False

    def interrupt(self) -> None:
        self._stop.set()
        self.inner.interrupt()


class SourceKind(str, enum.Enum):
    """The source options of ``lighthead-edge run``."""

    CAMERA = "camera"
    VIDEO = "video"
    URL = "url"
    IMAGES = "images"
    STDIN_RAW = "stdin-raw"


@dataclass(frozen=True)
class SourceSpec:
    """What to open: ``kind`` plus its ``target`` (camera index, path, URL or ``WxH``) and options."""

    kind: SourceKind
    target: str
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    loop: bool = False
    reconnect: bool = False

    @classmethod
    def guess(cls, target: str | int | Path, **options: object) -> SourceSpec:
        """A spec from a bare value: an int is a camera, ``scheme://`` a URL, a folder images, else a video file."""
        text = str(target)
        if isinstance(target, int) or text.isdigit():
            kind = SourceKind.CAMERA
        elif "://" in text:
            kind = SourceKind.URL
        elif Path(text).is_dir():
            kind = SourceKind.IMAGES
        else:
            kind = SourceKind.VIDEO
        return cls(kind, text, **options)


def open_source(spec: SourceSpec, *, log: Log = _stderr) -> Source:
    """The (unopened) :class:`Source` for ``spec``; ``reconnect`` wraps live camera and URL sources."""
    if spec.kind is SourceKind.CAMERA:
        try:
            index = int(spec.target)
        except ValueError:
            raise SourceError(f"--camera wants an index (0, 1, ...), got {spec.target!r}") from None
        source: Source = CameraSource(index, spec.width, spec.height, spec.fps)
    elif spec.kind is SourceKind.URL:
        source = UrlSource(spec.target)
    elif spec.kind is SourceKind.VIDEO:
        source = VideoFileSource(spec.target, loop=spec.loop)
    elif spec.kind is SourceKind.IMAGES:
        source = ImageFolderSource(spec.target)
    else:
        width, height = parse_raw_size(spec.target)
        source = RawStreamSource(width, height, fps=spec.fps)
    if spec.reconnect and source.live and spec.kind is not SourceKind.STDIN_RAW:
        source = Reconnecting(source, log=log)
    return source
