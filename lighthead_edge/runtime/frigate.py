"""A bundle as Frigate NVR's ZMQ detector: ``lighthead-edge serve --frigate ENDPOINT``. numpy + pyzmq + the runtime's
:class:`~lighthead_edge.runtime.detector.Detector`; never torch.

The protocol is Frigate's own, as ``frigate/detectors/plugins/zmq_ipc.py`` writes it (blakeblackshear/frigate at
commit e3fa70189324e5eb3b1dba756c153f6696f457de, 2026-07-23; the file's blob cc9a538c, last changed in 4ee12e62):

- Frigate holds a ``zmq.REQ`` socket that *connects* to ``detectors.<name>.endpoint`` (default
  ``ipc:///tmp/cache/zmq_detector``; any ZMQ endpoint, ``tcp://host:port`` too), with ``RCVTIMEO`` = ``SNDTIMEO`` =
  ``request_timeout_ms`` (default 200) and ``LINGER`` = ``linger_ms`` (default 0). This server is the ``REP`` side
  and *binds*.
- Model handshake, once at start and again after every timeout: a one-frame request
  ``{"model_request": true, "model_name": basename(model.path)}``, answered by one JSON frame
  ``{"model_available": bool, "model_loaded": bool}`` within 30 s. Until it gets ``true``/``true`` Frigate's
  ``detect_raw`` returns zeros without sending anything. (Were ``model_available`` false, Frigate would upload
  ``model.path`` as ``[{"model_data": true, "model_name": ...}, file bytes]`` and expect ``{"model_saved",
  "model_loaded"}``.) This server runs the one bundle given by ``--model``, so it answers true/true to any name and
  refuses an upload (``model_saved: false``).
- Detection request: two frames ``[header, tensor]``, header ``{"shape": [...], "dtype": "uint8" | "float32",
  "model_type": "ssd" ...}``, the tensor's C-order bytes. The tensor is Frigate's ``create_tensor_input``
  (frigate/util/object.py): the region cropped from the camera's YUV frame, converted to ``model.input_pixel_format``
  (rgb by default, or bgr), ``cv2.resize``d (INTER_LINEAR) to ``model.width`` x ``model.height``, [1, H, W, 3] uint8;
  then ``_transform_input`` (frigate/object_detection/base.py) transposes it to ``model.input_tensor`` (nhwc, nchw,
  hwnc or hwcn) and, for ``model.input_dtype`` float, divides by 255 into float32 (float_denorm: float32 0..255).
  The header carries neither the pixel format nor float vs float_denorm: they are this server's
  ``--input-pixel-format`` and ``--input-dtype``; the layout is read from the shape (N = 1 and C = 3).
- Reply: either ``[header {"shape": [20, 6], "dtype": "float32"}, bytes]`` or one frame of exactly 480 bytes; rows
  ``(class_id, score, y_min, x_min, y_max, x_max)``, the box normalised to the tensor Frigate sent, class ids into
  Frigate's labelmap, by decreasing score, zero rows after the last (Frigate stops at the first score below its
  threshold). Frigate copies the array into a [20, 6] float32 shared buffer, so any other shape breaks its detector
  process; a one-frame reply of another length is logged and read as zeros.
- Timeouts: on ``zmq.Again`` (no reply within ``request_timeout_ms``) or any ``ZMQError`` Frigate closes the socket,
  makes a new one, repeats the model handshake (waiting up to 30 s for its reply) and returns zeros for that frame.

This server replies in the two-frame form. A request it can't use (not JSON, a shape or dtype Frigate would not send,
a byte count that does not match, the wrong number of frames) gets zeros, which Frigate reads as "no detections",
with an ``"error"`` text in the header that Frigate ignores; the error is counted and logged in one line, and the
server keeps serving. Replies are never skipped: a REP socket must answer every request before it can take the next.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from lighthead_edge.errors import ConfigError
from lighthead_edge.runtime.detector import Detections, Detector
from lighthead_edge.runtime.stats import Histogram

Log = Callable[[str], None]
ROWS, COLUMNS = 20, 6  # Frigate's detect_raw output: [20, 6] float32
REPLY_HEADER = {"shape": [ROWS, COLUMNS], "dtype": "float32"}
MAX_SIDE = 16384
MAX_REQUEST_BYTES = 1 << 28  # 256 MiB: libzmq drops the connection of a bigger message before it is read
MAX_IPC_PATH = 107  # sockaddr_un.sun_path holds 108 bytes with the NUL
POLL_MS = 100  # how often the loop looks for a stop request while idle
WARN_FIRST, WARN_EVERY = 10, 100  # one line for each of the first errors, then for every 100th
MODEL_UPLOAD_REFUSED = json.dumps({"model_saved": False, "model_loaded": False, "error": "this server runs the bundle "
                                   "it was started with (--model); it takes no model upload"}).encode()  # fmt: skip


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class PixelFormat(str, Enum):
    """Frigate's ``model.input_pixel_format`` (yuv is not supported: the bundle takes BGR)."""

    BGR = "bgr"
    RGB = "rgb"


class InputDType(str, Enum):
    """Frigate's ``model.input_dtype``: uint8 0..255, float32 0..1, or float32 0..255."""

    INT = "int"
    FLOAT = "float"
    FLOAT_DENORM = "float_denorm"


LAYOUTS = {"nhwc": "NHWC", "nchw": "NCHW", "hwnc": "HWNC", "hwcn": "HWCN"}  # Frigate's model.input_tensor


class RequestError(ValueError):
    """A request this server can't answer with detections (the client gets zeros and this text)."""


# ------------------------------------------------------------------------------------------------------ endpoint
@dataclass(frozen=True)
class Endpoint:
    """A ZMQ endpoint this server binds: ``ipc://PATH`` (``path`` set, unless abstract ``ipc://@name``) or
    ``tcp://HOST:PORT``."""

    url: str
    path: Path | None = None


def parse_endpoint(text: str) -> Endpoint:
    """``ipc://PATH`` or ``tcp://HOST:PORT`` -> :class:`Endpoint`; a :class:`ConfigError` naming what is wrong
    (checked before the bundle loads, so a typo fails at once)."""
    scheme, sep, address = text.partition("://")
    if not sep or scheme not in ("ipc", "tcp") or not address:
        raise ConfigError(f"--frigate {text!r}: give ipc://PATH (e.g. ipc:///tmp/cache/zmq_detector, Frigate's "
                          "default) or tcp://HOST:PORT (e.g. tcp://0.0.0.0:5555)")  # fmt: skip
    if scheme == "tcp":
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ConfigError(f"--frigate {text!r}: tcp wants HOST:PORT with a port in 1..65535 (e.g. "
                              "tcp://0.0.0.0:5555)")  # fmt: skip
        return Endpoint(text)
    if address.startswith("@"):  # Linux abstract socket: no file
        return Endpoint(text)
    path = Path(address)
    if len(os.fsencode(address)) > MAX_IPC_PATH:
        raise ConfigError(f"--frigate {text!r}: an ipc path has at most {MAX_IPC_PATH} bytes; use a shorter one")
    _check_ipc_path(text, path)
    return Endpoint(text, path)


def _check_ipc_path(text: str, path: Path) -> None:
    """The folder must exist and be writable; an existing file there must be a socket nobody listens on (libzmq
    would silently delete whatever is at the path, or take the endpoint over from a live server)."""
    folder = path.absolute().parent
    if not folder.is_dir():
        raise ConfigError(f"--frigate {text!r}: folder {folder} does not exist (create it, e.g. the volume Frigate "
                          "shares as /tmp/cache)")  # fmt: skip
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"--frigate {text!r}: folder {folder} is not writable")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"--frigate {text!r}: {path} exists and is not a socket; pick another path")
    if _listening(path):
        raise ConfigError(f"--frigate {text!r}: another server is listening on {path}; stop it or pick another path")


def _listening(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False  # refused: a socket file left by a killed server, which bind replaces
    finally:
        probe.close()
    return True


# ------------------------------------------------------------------------------------------------------ requests
def _header(frame: bytes) -> dict[str, Any]:
    try:
        header = json.loads(bytes(frame).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RequestError(f"the header frame is not JSON ({len(frame)} bytes)") from None
    if not isinstance(header, dict):
        raise RequestError(f"the header is JSON {type(header).__name__}, not an object")
    return header


def _shape(header: dict[str, Any]) -> tuple[int, ...]:
    shape = header.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 1 for d in shape):
        raise RequestError(f"header 'shape' {shape!r} is not a list of positive ints")
    return tuple(shape)


def layout_of(shape: tuple[int, ...]) -> str:
    """Which of Frigate's ``input_tensor`` layouts a 4-D shape is (N = 1, C = 3, H and W above 3)."""
    for name, axes in LAYOUTS.items():
        if len(shape) != 4 or shape[axes.index("N")] != 1 or shape[axes.index("C")] != 3:
            continue
        h, w = shape[axes.index("H")], shape[axes.index("W")]
        if 3 < h <= MAX_SIDE and 3 < w <= MAX_SIDE:
            return name
    raise RequestError(f"shape {list(shape)} is none of Frigate's layouts (nhwc [1,H,W,3], nchw [1,3,H,W], hwnc "
                       f"[H,W,1,3], hwcn [H,W,3,1]) with sides 4..{MAX_SIDE}")  # fmt: skip


def decode_tensor(
    header: dict[str, Any], frames: list[bytes], pixel_format: PixelFormat, input_dtype: InputDType
) -> np.ndarray:
    """A detection request ``[header, tensor bytes]`` (``header`` parsed) -> the frame (ndarray[H, W, 3] uint8 BGR);
    a :class:`RequestError` saying what does not fit."""
    if len(frames) != 2:
        raise RequestError(f"a detection request has 2 frames [header, tensor], got {len(frames)}")
    shape = _shape(header)
    layout = layout_of(shape)
    want = "uint8" if input_dtype is InputDType.INT else "float32"
    if header.get("dtype") != want:
        raise RequestError(f"dtype {header.get('dtype')!r}, but this server takes {want} (--input-dtype "
                           f"{input_dtype.value}; set it to Frigate's model.input_dtype)")  # fmt: skip
    dtype = np.dtype(want)
    expected = math.prod(shape) * dtype.itemsize
    if len(frames[1]) != expected:
        raise RequestError(f"{len(frames[1])} tensor bytes, but {want} {list(shape)} is {expected}")
    tensor = np.frombuffer(frames[1], dtype=dtype).reshape(shape)
    image = np.transpose(tensor, [LAYOUTS[layout].index(axis) for axis in "NHWC"])[0]
    if input_dtype is not InputDType.INT:
        scale = 255.0 if input_dtype is InputDType.FLOAT else 1.0
        image = np.clip(np.rint(np.nan_to_num(image * np.float32(scale))), 0, 255).astype(np.uint8)
    if pixel_format is PixelFormat.RGB:
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


def frigate_rows(detections: Detections, frame_hw: tuple[int, int], min_score: float = 0.0) -> np.ndarray:
    """Detections in ``frame_hw`` pixels -> Frigate's ndarray[20, 6] float32 ``(class_id, score, y_min, x_min,
    y_max, x_max)``: class id = label - 1 (the labelmap's line), the box divided by the frame's height and width and
    clipped to [0, 1], the 20 best scores at or above ``min_score`` first, then zero rows."""
    rows = np.zeros((ROWS, COLUMNS), np.float32)
    keep = np.flatnonzero(detections.scores >= min_score)
    keep = keep[np.argsort(-detections.scores[keep], kind="stable")][:ROWS]
    h, w = frame_hw
    boxes = detections.boxes[keep].astype(np.float32)
    n = len(keep)
    rows[:n, 0] = detections.labels[keep] - 1
    rows[:n, 1] = detections.scores[keep]
    rows[:n, 2:] = np.clip(boxes[:, [1, 0, 3, 2]] / np.array([h, w, h, w], np.float32), 0.0, 1.0)
    return rows


def labelmap_text(class_names: list[str]) -> str:
    """Frigate's labelmap file (``load_labels`` in frigate/util/builtin.py): ``"0 name"`` per line, id = label - 1."""
    for name in class_names:
        if not name.strip() or name != name.strip() or any(ch in name for ch in "\r\n"):
            raise ConfigError(f"class name {name!r} can't be a labelmap line (Frigate strips each line); rename it")
    return "".join(f"{index} {name}\n" for index, name in enumerate(class_names))


# --------------------------------------------------------------------------------------------------------- stats
@dataclass
class ServerStats:
    """What the server did: requests by kind, errors, and the reply time of frame requests (received to sent, ms;
    bad ones included, model checks not) in a fixed-memory histogram."""

    requests: int = 0
    detections: int = 0
    model_checks: int = 0
    errors: int = 0
    reply_ms: Histogram = field(default_factory=Histogram)
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (f"frigate: {self.requests} requests ({self.detections} detect, {self.model_checks} model checks, "
                f"{self.errors} errors), reply p50 {self.reply_ms.percentile(50):.1f} ms p95 "
                f"{self.reply_ms.percentile(95):.1f} ms, {self.requests / elapsed:.1f} req/s")  # fmt: skip


# -------------------------------------------------------------------------------------------------------- server
class FrigateServer:
    """The REP side of Frigate's ZMQ detector, running ``detector`` on every frame Frigate sends.

    Args:
        detector: a loaded bundle; each request's frame is letterboxed to its graph input by the Detector itself.
        endpoint: ``ipc://PATH`` or ``tcp://HOST:PORT`` (or a parsed :class:`Endpoint`), bound by :meth:`bind`.
        min_score: detections below it are not sent.
        pixel_format, input_dtype: what Frigate's ``model:`` section says (the header does not carry them).
        log: where warnings and stats lines go.
    """

    def __init__(
        self,
        detector: Detector,
        endpoint: Endpoint | str,
        *,
        min_score: float = 0.0,
        pixel_format: PixelFormat | str = PixelFormat.BGR,
        input_dtype: InputDType | str = InputDType.INT,
        log: Log = _stderr,
    ) -> None:
        self.detector = detector
        self.endpoint = endpoint if isinstance(endpoint, Endpoint) else parse_endpoint(endpoint)
        self.min_score = float(min_score)
        self.pixel_format, self.input_dtype = PixelFormat(pixel_format), InputDType(input_dtype)
        self.log = log
        self.stats = ServerStats()
        self._stop = threading.Event()
        self._context: zmq.Context | None = None
        self._socket: zmq.Socket | None = None
        self._inode: tuple[int, int] | None = None

    # -- lifecycle
    def bind(self) -> FrigateServer:
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.REP)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        try:
            self._socket.bind(self.endpoint.url)
        except zmq.ZMQError as exc:
            self.close()
            raise ConfigError(f"--frigate {self.endpoint.url!r}: can't bind: {exc}") from None
        if self.endpoint.path is not None:
            info = os.lstat(self.endpoint.path)
            self._inode = (info.st_dev, info.st_ino)
        return self

    def close(self) -> None:
        """Close the socket and remove the ipc socket file this server made (never one another server made)."""
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        if self._context is not None:
            self._context.term()
            self._context = None
        path, inode, self._inode = self.endpoint.path, self._inode, None
        if path is None or inode is None:
            return
        try:
            info = os.lstat(path)
            if (info.st_dev, info.st_ino) == inode:
                path.unlink()
        except OSError:
            pass  # libzmq removed it already

    def __enter__(self) -> FrigateServer:
        return self.bind()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stop(self) -> None:
        """Ask :meth:`serve` to return after the request in hand (safe from a signal handler or another thread)."""
        self._stop.set()

    # -- loop
    def serve(self, *, max_requests: int | None = None, stats_every: float = 0.0) -> None:
        """Answer requests until :meth:`stop` or ``max_requests`` answered; a stats line every ``stats_every`` s."""
        if self._socket is None:
            raise RuntimeError("bind() first")
        next_stats = time.monotonic() + stats_every
        while not self._stop.is_set() and (max_requests is None or self.stats.requests < max_requests):
            if stats_every > 0 and time.monotonic() >= next_stats:
                self.log(self.stats.line())
                next_stats = time.monotonic() + stats_every
            if not self._socket.poll(POLL_MS, zmq.POLLIN):
                continue
            frames = self._socket.recv_multipart(copy=True)
            start, checks = time.perf_counter(), self.stats.model_checks
            self._socket.send_multipart(self.handle(frames))
            if self.stats.model_checks == checks:  # the reply time of frames, not of handshakes
                self.stats.reply_ms.add((time.perf_counter() - start) * 1000.0)

    def handle(self, frames: list[bytes]) -> list[bytes]:
        """One request -> its reply frames; never raises (a REP socket must answer before it can receive again)."""
        self.stats.requests += 1
        try:
            header = _header(frames[0])
            if len(frames) == 1 and header.get("model_request"):
                return self._model_reply(header)
            if header.get("model_data"):
                return self._error([MODEL_UPLOAD_REFUSED], "refused a model upload (this server runs its --model)")
            return self._detect(header, frames)
        except RequestError as exc:
            return self._error(self._zeros(str(exc)), f"bad request: {exc}")
        except Exception as exc:  # noqa: BLE001 - an engine failure on one frame must not take Frigate's detector down
            return self._error(self._zeros(f"{type(exc).__name__}: {exc}"), f"failed request: {exc}")

    def _model_reply(self, header: dict[str, Any]) -> list[bytes]:
        self.stats.model_checks += 1
        if self.stats.model_checks == 1:
            self.log(f"frigate: model check for {str(header.get('model_name'))!r}: answered with this bundle")
        return [json.dumps({"model_available": True, "model_loaded": True}).encode()]

    def _detect(self, header: dict[str, Any], frames: list[bytes]) -> list[bytes]:
        frame = decode_tensor(header, frames, self.pixel_format, self.input_dtype)
        rows = frigate_rows(self.detector(frame), frame.shape[:2], self.min_score)
        self.stats.detections += 1
        return [json.dumps(REPLY_HEADER).encode(), rows.tobytes()]

    @staticmethod
    def _zeros(error: str) -> list[bytes]:
        header = {**REPLY_HEADER, "error": error}
        return [json.dumps(header).encode(), np.zeros((ROWS, COLUMNS), np.float32).tobytes()]

    def _error(self, reply: list[bytes], message: str) -> list[bytes]:
        self.stats.errors += 1
        n = self.stats.errors
        if n <= WARN_FIRST or n % WARN_EVERY == 0:
            more = f" (error {n}; from now on every {WARN_EVERY}th is logged)" if n == WARN_FIRST else ""
            self.log(f"warning: frigate request {self.stats.requests}: {message}; replied with no detections{more}")
        return reply


# ----------------------------------------------------------------------------------------------------- the command
@dataclass(frozen=True)
class ServeSettings:
    """Everything ``lighthead-edge serve`` takes (see its ``--help``)."""

    frigate: str
    model: str | None = None
    backend: str | None = None
    precision: str | None = None
    threads: int | None = None
    min_score: float = 0.3
    labelmap: str | None = None
    pixel_format: PixelFormat = PixelFormat.BGR
    input_dtype: InputDType = InputDType.INT
    max_requests: int | None = None
    stats_every: float = 30.0


def serve_frigate(settings: ServeSettings, *, log: Log = _stderr) -> ServerStats:
    """Load the bundle, write the labelmap, bind, serve until SIGINT/SIGTERM or ``max_requests``; return the stats.

    Every check a user can fail (endpoint, bundle, labelmap path) comes before the socket exists; the ipc socket file
    is removed at the end however the loop ends."""
    from lighthead_edge.runtime.outputs import check_writable, write_atomic
    from lighthead_edge.runtime.runner import resolve_bundle

    endpoint = parse_endpoint(settings.frigate)
    bundle = resolve_bundle(settings.model)
    if settings.labelmap:
        check_writable(settings.labelmap, "--labelmap", file_only=True)
    detector = Detector(bundle, settings.backend, threads=settings.threads, precision=settings.precision)
    if settings.labelmap:
        write_atomic(settings.labelmap, labelmap_text(detector.names), "--labelmap")
    server = FrigateServer(detector, endpoint, min_score=settings.min_score, pixel_format=settings.pixel_format,
                           input_dtype=settings.input_dtype, log=log)  # fmt: skip
    stopped_by: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopped_by.append(signal.Signals(signum).name)
        server.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with server:
            h, w = detector.input_size
            log(f"serving {bundle} ({detector.artifact.key}, graph input {w}x{h}, {len(detector.names)} classes) "
                f"to Frigate on {endpoint.url}")  # fmt: skip
            server.serve(max_requests=settings.max_requests, stats_every=settings.stats_every)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    reason = stopped_by[0] if stopped_by else f"--max-requests {settings.max_requests}"
    log(f"{server.stats.line()}; stopped by {reason}")
    return server.stats
