"""Helpers of the C library tests (tests/embed_c): building deploy/c, a synthetic bundle, the CLI and a ctypes binding
of ``liblighthead.so``. ``tests/embed_c`` is on ``sys.path`` (pytest rootdir mode): ``from embed_c_lib import ...``.

The synthetic bundle ("fake") is a real bundle of a tiny OpenVINO graph with the exporter's interface (uint8 BGR
frames in; ``boxes``, ``scores``, ``labels``, ``num_detections`` out; the ``lighthead_edge`` rt_info) whose outputs
are plain functions of the frame's first bytes. It compiles in milliseconds, even under valgrind, and lets a test
choose boxes outside the frame, labels outside 1..C and the number of detections.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_C = ROOT / "deploy" / "c"
FAKE_CLASSES = ["cat", "dog", "bird"]
FAKE_ROWS = 8  # D: the graph's fixed number of output rows
FAKE_SIZE = (24, 32)  # (H, W): not square, so a swapped width and height shows


# ------------------------------------------------------------------------------------------------------ build
@dataclass(frozen=True)
class CBuild:
    """A build of deploy/c (``build``: the build folder) and its installed folder (``prefix``)."""

    build: Path
    prefix: Path

    @property
    def cli(self) -> Path:
        return self.build / "lighthead_detect"

    @property
    def loop(self) -> Path:
        return self.build / "lh_loop"

    @property
    def library(self) -> Path:
        return self.build / "liblighthead.so"


def missing_tools(*tools: str) -> list[str]:
    """The tools (executables, or ``pkg-config:NAME`` packages) this machine lacks."""
    missing = []
    for tool in tools:
        if tool.startswith("pkg-config:"):
            ok = (
                shutil.which("pkg-config")
                and subprocess.run(["pkg-config", "--exists", tool.split(":", 1)[1]]).returncode == 0
            )
        else:
            ok = shutil.which(tool) is not None
        if not ok:
            missing.append(tool)
    return missing


def require_tools(*tools: str) -> None:
    """Fail (never skip) naming what is missing: the C tests run the real toolchain."""
    import pytest

    missing = missing_tools(*tools)
    if missing:
        pytest.fail(f"the C library tests need {', '.join(missing)}; install them with scripts/setup_system.sh "
                    "(Debian: cmake gcc make pkg-config libcjson-dev valgrind)")  # fmt: skip


def build_c(root: Path) -> CBuild:
    """``bash deploy/c/build.sh PREFIX`` with its build folder under ``root`` (the README's one command)."""
    build, prefix = root / "build", root / "prefix"
    env = {**os.environ, "BUILD_DIR": str(build)}
    result = subprocess.run(["bash", str(DEPLOY_C / "build.sh"), str(prefix)], env=env, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"deploy/c/build.sh failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return CBuild(build, prefix)


# ---------------------------------------------------------------------------------------------- fake bundle
def fake_frame(num: int, values: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """A frame for the fake graph: ``num`` detections (byte [1, 0, 0]), its other bytes random or ``values``."""
    h, w = FAKE_SIZE
    frame = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    if values is not None:
        frame.reshape(-1)[: values.size] = values
    frame[1, 0, 0] = num
    return frame


def _fake_model(h: int, w: int, rows: int, classes: int):
    """images u8 [1, h, w, 3] -> boxes = bytes[0:4D] * 5 / 32 - 4 (some outside the frame), scores = bytes[4D:5D] / 255,
    labels = bytes[5D:6D] mod (C + 2) (0 and C + 1 are outside 1..C), num_detections = min(byte at [1, 0, 0], D)."""
    import openvino as ov
    import openvino.opset13 as op

    images = op.parameter([1, h, w, 3], ov.Type.u8, name="images")
    flat = op.convert(op.reshape(images, op.constant(np.array([-1], np.int64)), False), ov.Type.f32)

    def const(value, dtype=np.int64):
        return op.constant(np.array(value, dtype))

    def part(start: int, stop: int):
        return op.slice(flat, const([start]), const([stop]), const([1]))

    boxes = op.subtract(op.multiply(part(0, 4 * rows), const(0.15625, np.float32)), const(4.0, np.float32))
    boxes = op.reshape(boxes, const([1, rows, 4]), False)
    scores = op.reshape(op.divide(part(4 * rows, 5 * rows), const(255.0, np.float32)), const([1, rows]), False)
    labels = op.floor_mod(op.convert(part(5 * rows, 6 * rows), ov.Type.i64), const(classes + 2))
    labels = op.reshape(labels, const([1, rows]), False)
    first = w * 3
    num = op.minimum(op.convert(part(first, first + 1), ov.Type.i64), const([rows]))
    outputs = {"boxes": boxes, "scores": scores, "labels": labels, "num_detections": num}
    results = []
    for name, node in outputs.items():
        node.output(0).get_tensor().set_names({name})
        results.append(op.result(node))
    return ov.Model(results, [images], "fake_lighthead")


def make_fake_bundle(root: Path, *, precisions: tuple[str, ...] = ("fp32", "fp16")) -> Path:
    """A bundle of the fake graph (see the module docstring), with the manifest the exporter writes."""
    import openvino as ov

    from lighthead_edge.runtime.bundle import (
        BUNDLE_FORMAT,
        Backend,
        Precision,
        artifact_entry,
        file_records,
        input_record,
        write_manifest,
    )  # fmt: skip

    root.mkdir(parents=True, exist_ok=True)
    h, w = FAKE_SIZE
    meta = {
        "format": BUNDLE_FORMAT,
        "class_names": list(FAKE_CLASSES),
        "input": input_record(h, w),
        "preprocessing": {"letterbox": {"pad_bgr": [104, 116, 124], "size": [h, w], "in_graph": True}},
    }
    entries, names = [], []
    for precision in precisions:
        model = _fake_model(h, w, FAKE_ROWS, len(FAKE_CLASSES))
        for key, value in meta.items():
            model.set_rt_info(json.dumps(value, sort_keys=True), ["lighthead_edge", key])
        ov.save_model(model, str(root / f"model_{precision}.xml"), compress_to_fp16=precision == "fp16")
        entry = artifact_entry(Backend.OPENVINO, Precision(precision))
        entries.append(entry)
        names += entry["files"]
    write_manifest(root, {**meta, "artifacts": entries, "files": file_records(root, names)})
    return root


# ------------------------------------------------------------------------------------------------------ ctypes
class LhError(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int), ("message", ctypes.c_char * 1024)]


class LhOptions(ctypes.Structure):
    _fields_ = [("device", ctypes.c_char_p), ("threads", ctypes.c_int), ("precision", ctypes.c_char_p),
                ("min_score", ctypes.c_double)]  # fmt: skip


class LhDetection(ctypes.Structure):
    _fields_ = [("x1", ctypes.c_float), ("y1", ctypes.c_float), ("x2", ctypes.c_float), ("y2", ctypes.c_float),
                ("score", ctypes.c_float), ("label", ctypes.c_int), ("class_name", ctypes.c_char_p)]  # fmt: skip


class LhDetections(ctypes.Structure):
    _fields_ = [("count", ctypes.c_int), ("items", ctypes.POINTER(LhDetection))]


STATUS = {0: "LH_OK", 1: "LH_ERR_INVALID_ARGUMENT", 2: "LH_ERR_BUNDLE", 3: "LH_ERR_FRAME_SIZE", 4: "LH_ERR_ENGINE",
          5: "LH_ERR_NO_MEMORY"}  # fmt: skip


class LhFailure(Exception):
    """A call that returned a status other than LH_OK: ``status`` (its name) and ``message``."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


def load_library(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.lh_options_default.restype = LhOptions
    lib.lh_detector_create.restype = ctypes.c_void_p
    lib.lh_detector_create.argtypes = [ctypes.c_char_p, ctypes.POINTER(LhOptions), ctypes.POINTER(LhError)]
    lib.lh_detector_destroy.argtypes = [ctypes.c_void_p]
    lib.lh_detect.restype = ctypes.c_int
    lib.lh_detect.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.POINTER(ctypes.POINTER(LhDetections)), ctypes.POINTER(LhError)]  # fmt: skip
    lib.lh_detections_free.argtypes = [ctypes.POINTER(LhDetections)]
    lib.lh_detector_frame_size.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
    lib.lh_detector_class_count.argtypes = [ctypes.c_void_p]
    lib.lh_detector_class_name.restype = ctypes.c_char_p
    lib.lh_detector_class_name.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.lh_detector_precision.restype = ctypes.c_char_p
    lib.lh_detector_precision.argtypes = [ctypes.c_void_p]
    lib.lh_status_name.restype = ctypes.c_char_p
    lib.lh_version.restype = ctypes.c_char_p
    return lib


class CDetector:
    """``liblighthead`` through ctypes: ``CDetector(lib, bundle, precision=..., threads=..., min_score=...)``, then
    ``detect(frame, stride=None)`` -> list of ``(x1, y1, x2, y2, score, label, class_name)``."""

    def __init__(self, lib: ctypes.CDLL, bundle: Path | str | None, *, device: str | None = "CPU",
                 precision: str | None = None, threads: int = 1, min_score: float = 0.0) -> None:  # fmt: skip
        self.lib = lib
        options = lib.lh_options_default()
        options.device = device.encode() if device is not None else None
        options.precision = precision.encode() if precision else None
        options.threads, options.min_score = threads, min_score
        error = LhError()
        path = None if bundle is None else str(bundle).encode()
        self.handle = lib.lh_detector_create(path, ctypes.byref(options), ctypes.byref(error))
        if not self.handle:
            raise LhFailure(STATUS[error.status], error.message.decode())
        w, h = ctypes.c_int(), ctypes.c_int()
        lib.lh_detector_frame_size(self.handle, ctypes.byref(w), ctypes.byref(h))
        self.width, self.height = w.value, h.value

    def detect(self, frame: np.ndarray, *, stride: int | None = None, width: int | None = None,
               height: int | None = None) -> list[tuple]:  # fmt: skip
        """Detections of ``frame`` (ndarray[h, w, 3] uint8, or a padded [h, stride] buffer with ``stride``)."""
        height = frame.shape[0] if height is None else height
        width = (frame.shape[1] if frame.ndim == 3 else self.width) if width is None else width
        stride = frame.shape[1] * 3 if stride is None else stride
        data = np.ascontiguousarray(frame)
        out, error = ctypes.POINTER(LhDetections)(), LhError()
        status = self.lib.lh_detect(self.handle, data.ctypes.data, width, height, stride, ctypes.byref(out),
                                    ctypes.byref(error))  # fmt: skip
        if status != 0:
            assert not out, "a failed lh_detect left *out set"
            raise LhFailure(STATUS[status], error.message.decode())
        try:
            items = out.contents.items
            return [(d.x1, d.y1, d.x2, d.y2, d.score, d.label, d.class_name.decode())
                    for d in (items[i] for i in range(out.contents.count))]  # fmt: skip
        finally:
            self.lib.lh_detections_free(out)

    def close(self) -> None:
        if self.handle:
            self.lib.lh_detector_destroy(self.handle)
            self.handle = None


# --------------------------------------------------------------------------------------------------------- CLI
def run_cli(cli: Path, *args: object, input: bytes | None = b"", env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:  # fmt: skip
    """``lighthead_detect ARGS`` with ``input`` on stdin; stdout and stderr as bytes."""
    return subprocess.run([str(cli), *map(str, args)], input=input, capture_output=True, env=env, timeout=timeout)


def jsonl(stdout: bytes) -> list[dict]:
    """The JSON lines of ``stdout``; every line must be whole (ends with a newline) and parse."""
    text = stdout.decode("ascii")
    assert text == "" or text.endswith("\n"), f"a half line on stdout: {text[-80:]!r}"
    return [json.loads(line) for line in text.splitlines()]


def without_timestamps(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "timestamp"} for r in records]
