"""Frame sources for the video runner: a camera, a video file, a stream URL, a folder of images, or raw frames on
standard input. numpy + OpenCV only (no torch).

Every source hands out :class:`Frame` objects from :meth:`Source.read` until it returns ``None`` (the end), and
counts what it had to skip: ``corrupt`` frames (undecodable images, a short last raw frame, a frame a video file
couldn't decode) and ``missing`` ones (frames a truncated file's header announces but that aren't there), and
``resolution_changes`` (frames of another size than the frame before).

*Live* sources (camera, network stream, stdin) produce frames at their own pace; the pipeline keeps only the newest
of them. File sources (video files, ``file://`` URLs, image folders) are read frame by frame, none dropped.
:class:`Reconnecting` wraps a live source and reopens it with exponential backoff when it drops or stalls, and
counts the outages: ``gaps``, ``gap_seconds``, ``reconnect_attempts`` and ``reconnects``.

A network stream that can't be opened is diagnosed in one line: the runner asks the server itself (an RTSP
``DESCRIBE`` or an HTTP ``GET``, with the URL's credentials) to tell a refused connection, a silent server, a wrong
password and a wrong path apart, since OpenCV's FFmpeg backend only says "not opened".
"""

from __future__ import annotations

import base64
import enum
import hashlib
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import cv2
import numpy as np

from lighthead_edge.errors import LightheadError

Log = Callable[[str], None]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
STREAM_TIMEOUT_MS = 5000  # a stalled stream fails a read after this long, so --reconnect can act
STALL_S = 2.0  # a live read that waits this long and then gets a frame is an outage too (counted, not reconnected)
PROBE_TIMEOUT_S = 2.0  # the diagnosis of a stream that won't open waits this long for the server


class SourceError(LightheadError):
    """A frame source that can't be opened: missing camera, unreadable file, unreachable stream, bad raw size.

    ``reason``: the cause in a few words, without the advice (what the reconnect warnings repeat).
    """

    exit_code = 6

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


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
        corrupt, missing: frames skipped, see the module docstring.
        resolution_changes: frames whose size differs from the previous frame's (mid-stream or after a reconnect).
        gaps, gap_seconds: outages (a live stream that dropped or stalled, or couldn't be opened at first) and the
            seconds without frames in them, from the last frame before to the first one after (or to the stop).
        reconnect_attempts, reconnects: every reopen tried, and those that succeeded (:class:`Reconnecting`).
        log: where one-line warnings go (a resolution change), or None for none.
    """

    name = "source"
    live = False
    fps: float | None = None
    corrupt = 0  # counters: class-level zeros, per-instance once incremented
    missing = 0
    reconnects = 0
    reconnect_attempts = 0
    resolution_changes = 0
    gaps = 0
    gap_seconds = 0.0
    log: Log | None = None
    _size: tuple[int, int] | None = None

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

    def _note_size(self, image: np.ndarray) -> None:
        """Count (and log) a frame whose size differs from the previous one's; called by ``read`` on each frame."""
        size = (image.shape[1], image.shape[0])
        if self._size is not None and size != self._size:
            self.resolution_changes += 1
            if self.log is not None:
                before = "x".join(map(str, self._size))
                self.log(f"{self.name}: resolution changed {before} -> {size[0]}x{size[1]}")
        self._size = size

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
            self._note_size(image)
            return Frame(image, time.time())
        return None


class CameraSource(_CaptureSource):
    """A V4L2 / OpenCV camera by index, with optional ``width``/``height``/``fps`` requests (the driver may round)."""

    live = True

    def __init__(
        self, index: int, width: int | None = None, height: int | None = None, fps: float | None = None, *,
        log: Log | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.index, self.width, self.height, self.fps, self.log = int(index), width, height, fps, log
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


# ------------------------------------------------------------------------------------- why a stream won't open
_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935, "rtmps": 443}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _authorization(challenges: list[str], method: str, uri: str, user: str, password: str) -> str | None:
    """The ``Authorization`` answer to a 401's ``WWW-Authenticate`` challenges (Digest preferred, else Basic)."""
    for challenge in challenges:
        kind, _, rest = challenge.partition(" ")
        if kind.lower() != "digest":
            continue
        params = dict(re.findall(r'(\w+)\s*=\s*"?([^",]*)"?', rest))
        ha1, ha2 = _md5(f"{user}:{params.get('realm', '')}:{password}"), _md5(f"{method}:{uri}")
        nonce, extra = params.get("nonce", ""), ""
        if "auth" in params.get("qop", "").split(","):
            cnonce = os.urandom(8).hex()
            response = _md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
            extra = f', qop=auth, nc=00000001, cnonce="{cnonce}"'
        else:
            response = _md5(f"{ha1}:{nonce}:{ha2}")
        if "opaque" in params:
            extra += f', opaque="{params["opaque"]}"'
        return (f'Digest username="{user}", realm="{params.get("realm", "")}", nonce="{nonce}", uri="{uri}", '
                f'response="{response}"{extra}')  # fmt: skip
    if any(c.split(" ", 1)[0].lower() == "basic" for c in challenges):
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return None


def _request(parts: SplitResult) -> tuple[str, str, str]:
    """(method, request URI, host header) of the probe of ``parts``: RTSP ``DESCRIBE`` of the URL without its
    credentials, or HTTP ``GET`` of its path."""
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    if parts.scheme.lower() == "rtsp":
        return "DESCRIBE", urlunsplit(parts._replace(netloc=netloc)), netloc
    return "GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), netloc


def _ask(address: tuple[str, int], parts: SplitResult, authorization: str | None) -> tuple[int, str, list[str]]:
    """One RTSP ``DESCRIBE`` (or HTTP ``GET``) of ``parts`` -> (status, reason phrase, WWW-Authenticate values).
    Raises ``OSError`` (``TimeoutError`` when the server says nothing) or ``ValueError`` (not that protocol)."""
    method, uri, netloc = _request(parts)
    lines = ([f"{method} {uri} RTSP/1.0", "CSeq: 1", "Accept: application/sdp"] if method == "DESCRIBE"
             else [f"{method} {uri} HTTP/1.0", f"Host: {netloc}"])  # fmt: skip
    lines += ["User-Agent: lighthead-edge"] + ([f"Authorization: {authorization}"] if authorization else [])
    with socket.create_connection(address, timeout=PROBE_TIMEOUT_S) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 16384:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    match = re.fullmatch(r"(RTSP|HTTP)/\d\.\d (\d{3}) ?(.*)", head[0])
    if match is None:
        raise ValueError("not an RTSP or HTTP answer")
    challenges = [v.strip() for k, _, v in (h.partition(":") for h in head[1:]) if k.lower() == "www-authenticate"]
    return int(match[2]), match[3].strip(), challenges


def _status_reason(status: int, phrase: str, parts: SplitResult, with_credentials: bool) -> str:
    """What an answer to ``_ask`` means, in a few words."""
    if status == 401 and with_credentials:
        return "unauthorized (401): wrong user name or password"
    if status == 401:
        return "unauthorized (401): the stream needs a user name and password (scheme://USER:PASSWORD@host/...)"
    if status == 403:
        return "forbidden (403): this user may not open this stream"
    if status == 404:
        return f"not found (404): the server has no stream at {parts.path or '/'}; check the path"
    if 200 <= status < 300:
        return "the server answers, but OpenCV's FFmpeg could not open the stream (codec or transport?)"
    return f"the server answered {status} {phrase}".rstrip()


def diagnose_stream(url: str, waited_s: float = 0.0) -> str:
    """Why OpenCV's FFmpeg backend couldn't open the network stream ``url``, in a few words (never the password):
    an unknown host, a refused connection, a server that accepts connections and says nothing, 401 (wrong or
    missing credentials), 403, 404, or another answer. ``waited_s``: how long the failed open took."""
    parts = urlsplit(url)
    timeout_s = STREAM_TIMEOUT_MS / 1000
    timed_out = f"no answer within {timeout_s:.1f} s: " if waited_s >= timeout_s * 0.9 else ""
    try:
        host, port = parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return "the URL's port is not a number"
    if not host or not port:
        return "not a network stream that OpenCV's FFmpeg reads"
    where = f"{host}:{port}"
    try:
        if parts.scheme.lower() not in ("rtsp", "http"):
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            return timed_out + f"{where} takes connections, but OpenCV's FFmpeg could not open the stream"
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        status, phrase, challenges = _ask((host, port), parts, None)
        if status == 401 and parts.username is not None:
            method, uri, _ = _request(parts)
            answer = _authorization(challenges, method, uri, user, password)
            if answer is not None:
                status, phrase, _ = _ask((host, port), parts, answer)
        return timed_out + _status_reason(status, phrase, parts, parts.username is not None)
    except socket.gaierror:
        return f"unknown host {host}"
    except ConnectionRefusedError:
        return f"connection refused by {where} (nothing listening there)"
    except TimeoutError:
        return timed_out + f"{where} accepts connections but sends nothing (not a stream server, or hung)"
    except ValueError:
        return timed_out + f"{where} does not answer as an {parts.scheme.upper()} server"
    except OSError as exc:
        return timed_out + f"can't reach {where} ({exc.strerror or exc})"


class UrlSource(_CaptureSource):
    """A stream through OpenCV's FFmpeg backend: ``rtsp://``, ``http(s)://`` (MJPEG, HLS, ...), ``file://``.

    A ``file://`` URL is read like a video file (every frame); anything else is live. Opening and reading time out
    after :data:`STREAM_TIMEOUT_MS`, so a stalled stream ends (and is reopened with ``--reconnect``) instead of hanging.
    A stream that won't open is diagnosed (:func:`diagnose_stream`) for the error's one line.

    Note:
        FFmpeg reads about 1.5 s of a stream while it opens it (``avformat_find_stream_info``: some 20 frames at
        15 fps), and the connection keeps buffering until the first read (the runner loads the model in between).
        Those frames come out first, in a burst, stamped when read; the pipeline keeps only the newest of a burst
        and counts the rest dropped, so every frame the server sent is processed or counted.

        OpenCV asks RTSP servers for RTP over the RTSP TCP connection first (FFmpeg's ``rtsp_flags=prefer_tcp``): no
        UDP ports to let through a firewall or NAT, no packets lost to a full socket buffer. Setting
        ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` replaces that default (include ``rtsp_transport;tcp`` to keep it). Either
        way a server that dies resets the RTSP connection and the next read fails at once; a hung server or a cut
        cable is noticed by the read timeout.
    """

    def __init__(self, url: str, *, log: Log | None = _stderr) -> None:
        super().__init__()
        self.url, self.log = url, log
        self.name = f"stream {redact(url)}"
        self.live = urlsplit(url).scheme.lower() != "file"
        self._open_took = 0.0
        self._interrupted = False

    def open(self) -> None:
        self._interrupted = False
        super().open()

    def interrupt(self) -> None:
        self._interrupted = True  # a failed open then skips the diagnosis: the run is ending

    def read(self) -> Frame | None:
        start = time.monotonic()
        frame = super().read()
        if frame is None and self.live and self.log is not None and self.cap is not None:  # Reconnecting: log None
            waited = time.monotonic() - start
            why = f"no frames for {waited:.1f} s" if waited > STALL_S else "ended (the server closed the stream)"
            self.log(f"warning: {self.name}: {why}; add --reconnect to keep reading it")
        return frame

    def _cannot_open(self) -> SourceError:
        if not self.live:
            return SourceError(f"can't open {self.name}: not a video OpenCV reads, or no such file")
        if self._interrupted:
            return SourceError(f"can't open {self.name}: interrupted", "interrupted")
        reason = diagnose_stream(self.url, self._open_took)
        return SourceError(f"can't open {self.name}: {reason}; check the URL (and credentials), or add --reconnect "
                           "to keep trying", reason)  # fmt: skip

    def _capture(self) -> cv2.VideoCapture:
        ms, start = STREAM_TIMEOUT_MS, time.monotonic()
        try:
            return cv2.VideoCapture(
                self.url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            )
        finally:
            self._open_took = time.monotonic() - start


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
                self._note_size(image)
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
                self._note_size(image)
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


def parse_raw_target(text: str) -> tuple[int, int, str | None]:
    """``"640x480"`` -> ``(640, 480, None)`` (standard input); ``"640x480@/run/cam1.fifo"`` -> ``(640, 480,
    "/run/cam1.fifo")``: raw frames from a named pipe or file, so that several raw streams can run in one process."""
    size, at, path = text.partition("@")
    if at and not path.strip():
        raise SourceError(f"--stdin-raw wants WIDTHxHEIGHT or WIDTHxHEIGHT@PATH, got {text!r}")
    width, height = parse_raw_size(size)
    return width, height, path.strip() or None


class RawStreamSource(Source):
    """Raw ``bgr24`` frames of a fixed ``width x height`` on a byte stream (standard input by default, or the named
    pipe or file ``path``), as written by ``ffmpeg -f rawvideo -pix_fmt bgr24 -`` or a GStreamer ``fdsink`` /
    ``filesink``. A short last frame is counted corrupt."""

    live = True

    def __init__(
        self, width: int, height: int, stream: BinaryIO | None = None, fps: float | None = None,
        path: str | None = None,
    ) -> None:  # fmt: skip
        self.width, self.height, self.fps = width, height, fps
        self.stream, self.path = stream, path
        self._owned = False
        where = path if path is not None else ("stdin" if stream is None else "a stream")
        self.name = f"raw {width}x{height} bgr24 on {where}"

    @property
    def is_open(self) -> bool:
        return self.stream is not None

    def close(self) -> None:
        if self._owned and self.stream is not None:
            self.stream.close()
            self.stream, self._owned = None, False

    def open(self) -> None:
        if self.stream is None and self.path is not None:
            try:  # a FIFO's open waits for its writer, as a pipe on stdin does
                self.stream, self._owned = open(self.path, "rb", buffering=0), True  # noqa: SIM115 - closed in close()
            except OSError as exc:
                raise SourceError(f"--stdin-raw can't read {self.path}: {exc.strerror}") from None
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
    """Reopens ``inner`` whenever it ends, stalls (a read times out) or fails to open, waiting ``initial``, 2x, 4x ...
    up to ``maximum`` seconds between tries (reset after a frame arrives). Frames of a new size after a reconnect are
    passed on as they are, and counted in ``resolution_changes`` here: this takes over ``inner``'s log lines, so
    that they come in order (dropped, reconnected, resolution changed).

    Each outage is counted in ``gaps`` and ``gap_seconds`` (from the last frame before it, or from the first open
    if that failed, to the first frame after it, or to :meth:`interrupt`), each reopen tried in
    ``reconnect_attempts`` and each that succeeded in ``reconnects``; a read that waits more than :data:`STALL_S`
    and then gets a frame is an outage without a reconnect. Every event is one line on ``log``.

    It only ends when :meth:`interrupt` is called (the pipeline does so when it stops).
    """

    def __init__(self, inner: Source, *, initial: float = 0.5, maximum: float = 30.0, log: Log = _stderr) -> None:
        self.inner, self.initial, self.maximum, self.log = inner, initial, maximum, log
        self.name, self.live, self.fps = inner.name, inner.live, inner.fps
        inner.log = None  # the drop and the size changes are reported here, with what is done about them
        self._stop = threading.Event()
        self._open = self._tried = False
        self._delay = initial
        self.gaps = self.reconnect_attempts = 0
        self._gap_total = 0.0
        self._outage_since: float | None = None  # time.monotonic() of the last frame before the current outage
        self._outage_attempts = 0
        self._last_frame_at: float | None = None
        self._stopped_at: float | None = None

    @property
    def is_open(self) -> bool:
        return self._tried  # a failed first open is retried by read(), not raised

    @property
    def corrupt(self) -> int:  # the inner source counts; these mirror it
        return self.inner.corrupt

    @property
    def missing(self) -> int:
        return self.inner.missing

    @property
    def gap_seconds(self) -> float:
        """Seconds without frames in outages, the one going on (if any) counted up to now or to the stop."""
        ongoing = 0.0
        if self._outage_since is not None:
            ongoing = max(0.0, (self._stopped_at or time.monotonic()) - self._outage_since)
        return self._gap_total + ongoing

    def open(self) -> None:
        self._tried = True
        try:
            self.inner.open()
            self._open, self.fps = True, self.inner.fps or self.fps
        except SourceError as exc:
            self._begin_outage(time.monotonic())
            self.log(f"warning: can't open {self.inner.name} yet: {exc.reason}; retrying in {self._delay:.1f} s "
                     "(--reconnect)")  # fmt: skip

    def _begin_outage(self, since: float) -> None:
        if self._outage_since is None:
            self.gaps += 1
            self._outage_since, self._outage_attempts = since, 0

    def _reopen(self) -> bool:
        while not self._stop.wait(self._delay):
            self._delay = min(self._delay * 2, self.maximum)
            self.reconnect_attempts += 1
            self._outage_attempts += 1
            try:
                self.inner.open()
            except SourceError as exc:
                self.log(f"warning: {self.inner.name} still unavailable: {exc.reason}; next try in "
                         f"{self._delay:.1f} s (attempt {self._outage_attempts})")  # fmt: skip
                continue
            self._open = True
            self.reconnects += 1
            return True
        return False

    def _arrived(self, frame: Frame, waited: float) -> Frame:
        """Book a frame that ``inner.read`` returned after ``waited`` s: the end of an outage, or a long wait."""
        now = time.monotonic()
        self._delay = self.initial
        if self._outage_since is not None:
            gap = now - self._outage_since
            self._gap_total += gap
            self._outage_since = None
            self.log(f"reconnected to {self.inner.name} after a {gap:.1f} s gap (attempt {self._outage_attempts})")
        elif waited > STALL_S and self._last_frame_at is not None:
            self.gaps += 1
            self._gap_total += waited
            self.log(f"warning: {self.inner.name}: no frames for {waited:.1f} s, then resumed (no reconnect)")
        self._last_frame_at = now
        self._note_size(frame.image)
        return frame

    def read(self) -> Frame | None:
        while not self._stop.is_set():
            if not self._open and not self._reopen():
                break
            start = time.monotonic()
            frame = self.inner.read()
            if frame is not None:
                return self._arrived(frame, time.monotonic() - start)
            now = time.monotonic()
            self.inner.close()
            self._open = False
            if self._stop.is_set():
                break
            silent = now - (self._last_frame_at or start)
            if self._outage_since is None:
                self._begin_outage(self._last_frame_at or start)
                how = f": no frames for {silent:.1f} s" if now - start > STALL_S else " dropped"
                self.log(f"warning: {self.inner.name}{how}; reconnecting in {self._delay:.1f} s")
            else:  # opened again, but no frame came
                self.log(f"warning: {self.inner.name} opened but sent no frame; reconnecting in {self._delay:.1f} s")
        return None

    def close(self) -> None:
        self.inner.close()
        self._open = False

    def interrupt(self) -> None:
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
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
        source: Source = CameraSource(index, spec.width, spec.height, spec.fps, log=log)
    elif spec.kind is SourceKind.URL:
        source = UrlSource(spec.target, log=log)
    elif spec.kind is SourceKind.VIDEO:
        source = VideoFileSource(spec.target, loop=spec.loop)
    elif spec.kind is SourceKind.IMAGES:
        source = ImageFolderSource(spec.target)
    else:
        width, height, path = parse_raw_target(spec.target)
        source = RawStreamSource(width, height, fps=spec.fps, path=path)
    if spec.reconnect and source.live and spec.kind is not SourceKind.STDIN_RAW:
        source = Reconnecting(source, log=log)
    return source
