"""``lighthead-edge serve --frigate ENDPOINT`` as Frigate NVR sees it: a real server subprocess, and Frigate's half of
the protocol transcribed from Frigate's own source (never imported), blakeblackshear/frigate at commit
e3fa70189324e5eb3b1dba756c153f6696f457de:

- frigate/detectors/plugins/zmq_ipc.py (blob cc9a538c): ``ZmqIpcDetector``, lines 72-337 -> :class:`FrigateZmqDetector`;
- frigate/util/object.py lines 288-305 ``create_tensor_input`` -> :func:`create_tensor_input` (bgr pixel format);
- frigate/object_detection/base.py lines 68-78 ``_transform_input`` and frigate/object_detection/util.py lines 70-82
  ``tensor_transform`` -> :func:`transform_input`; lines 436-442 (``RemoteObjectDetector.detect``) -> :func:`objects`;
- frigate/util/builtin.py lines 154-179 ``load_labels`` -> :func:`load_labels`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq
from exported import ExportedAssets  # tests/ is on sys.path (pytest rootdir mode)

MODEL_W, MODEL_H = 160, 160  # Frigate's model.width / model.height in these tests (the bundle's graph is 128x128)
REQUEST_TIMEOUT_MS = 200  # ZmqDetectorConfig.request_timeout_ms default


# ------------------------------------------------------------------------------------------ Frigate, transcribed
class FrigateZmqDetector:
    """frigate/detectors/plugins/zmq_ipc.py ``ZmqIpcDetector`` (lines 72-337), logging and pydantic left out; the
    config values are ZmqDetectorConfig's defaults (request_timeout_ms 200, linger_ms 0)."""

    def __init__(self, endpoint: str, model_path: str = "/config/model_cache/lighthead", model_type: str = "ssd",
                 request_timeout_ms: int = REQUEST_TIMEOUT_MS, linger_ms: int = 0) -> None:  # fmt: skip
        self.model_path, self.model_type = model_path, model_type
        self._context = zmq.Context()
        self._endpoint = endpoint
        self._request_timeout_ms = request_timeout_ms
        self._linger_ms = linger_ms
        self._socket = None
        self._create_socket()
        self._model_ready = False
        self._model_name = os.path.basename(model_path)  # _get_model_name, lines 107-110
        self._initialize_model()
        self._zero_result = np.zeros((20, 6), np.float32)

    def _create_socket(self) -> None:  # lines 92-105
        if self._socket is not None:
            try:
                self._socket.close(linger=self._linger_ms)
            except Exception:
                pass
        self._socket = self._context.socket(zmq.REQ)
        self._socket.setsockopt(zmq.RCVTIMEO, self._request_timeout_ms)
        self._socket.setsockopt(zmq.SNDTIMEO, self._request_timeout_ms)
        self._socket.setsockopt(zmq.LINGER, self._linger_ms)
        self._socket.connect(self._endpoint)

    def _initialize_model(self) -> None:  # lines 112-125
        try:
            if self._check_and_transfer_model():
                self._model_ready = True
        except Exception:
            pass

    def _check_and_transfer_model(self) -> bool:  # lines 127-172
        try:
            header_bytes = json.dumps({"model_request": True, "model_name": self._model_name}).encode("utf-8")
            self._socket.send_multipart([header_bytes])
            original_timeout = self._socket.getsockopt(zmq.RCVTIMEO)
            self._socket.setsockopt(zmq.RCVTIMEO, 30000)
            try:
                response_frames = self._socket.recv_multipart()
            finally:
                self._socket.setsockopt(zmq.RCVTIMEO, original_timeout)
            if len(response_frames) == 1:
                try:
                    response = json.loads(response_frames[0].decode("utf-8"))
                    model_available = response.get("model_available", False)
                    model_loaded = response.get("model_loaded", False)
                    if model_available and model_loaded:
                        return True
                    elif model_available and not model_loaded:
                        return False
                    else:
                        return self._send_model_data()
                except json.JSONDecodeError:
                    return False
            else:
                return False
        except Exception:
            return False

    def _send_model_data(self) -> bool:  # lines 211-266
        try:
            if not os.path.exists(self.model_path):
                return False
            with open(self.model_path, "rb") as f:
                model_data = f.read()
            header_bytes = json.dumps({"model_data": True, "model_name": self._model_name}).encode("utf-8")
            self._socket.send_multipart([header_bytes, model_data])
            original_timeout = self._socket.getsockopt(zmq.RCVTIMEO)
            self._socket.setsockopt(zmq.RCVTIMEO, 30000)
            try:
                response_frames = self._socket.recv_multipart()
            finally:
                self._socket.setsockopt(zmq.RCVTIMEO, original_timeout)
            if len(response_frames) == 1:
                try:
                    response = json.loads(response_frames[0].decode("utf-8"))
                    return response.get("model_saved", False) and response.get("model_loaded", False)
                except json.JSONDecodeError:
                    return False
            return False
        except Exception:
            return False

    def _build_header(self, tensor_input: np.ndarray) -> bytes:  # lines 268-274
        header = {"shape": list(tensor_input.shape), "dtype": str(tensor_input.dtype.name),
                  "model_type": self.model_type}  # fmt: skip
        return json.dumps(header).encode("utf-8")

    def _decode_response(self, frames: list[bytes]) -> np.ndarray:  # lines 276-298
        try:
            if len(frames) == 1:
                buf = frames[0]
                if len(buf) != 20 * 6 * 4:
                    return self._zero_result
                return np.frombuffer(buf, dtype=np.float32).reshape((20, 6))
            if len(frames) >= 2:
                header = json.loads(frames[0].decode("utf-8"))
                shape = tuple(header.get("shape", []))
                dtype = np.dtype(header.get("dtype", "float32"))
                return np.frombuffer(frames[1], dtype=dtype).reshape(shape)
            return self._zero_result
        except Exception:
            return self._zero_result

    def detect_raw(self, tensor_input: np.ndarray) -> np.ndarray:  # lines 300-337
        if not self._model_ready:
            return self._zero_result
        try:
            header_bytes = self._build_header(tensor_input)
            payload_bytes = memoryview(tensor_input.tobytes(order="C"))
            self._socket.send_multipart([header_bytes, payload_bytes])
            reply_frames = self._socket.recv_multipart()
            return self._decode_response(reply_frames)
        except zmq.Again:
            try:
                self._create_socket()
                self._initialize_model()
            except Exception:
                pass
            return self._zero_result
        except zmq.ZMQError:
            try:
                self._create_socket()
                self._initialize_model()
            except Exception:
                pass
            return self._zero_result
        except Exception:
            return self._zero_result

    def close(self) -> None:
        self._socket.close(linger=0)
        self._context.term()


def create_tensor_input(frame_bgr: np.ndarray, region: tuple[int, int, int, int], width: int = MODEL_W,
                        height: int = MODEL_H) -> np.ndarray:  # fmt: skip
    """frigate/util/object.py ``create_tensor_input`` with ``input_pixel_format: bgr`` (our frames are BGR already,
    where Frigate crops its YUV frame with yuv_region_2_bgr): crop the region (x1, y1, x2, y2), resize, add N."""
    x1, y1, x2, y2 = region
    cropped = frame_bgr[y1:y2, x1:x2]
    if cropped.shape != (height, width, 3):
        cropped = cv2.resize(cropped, dsize=(width, height), interpolation=cv2.INTER_LINEAR)
    return np.expand_dims(cropped, axis=0)


def transform_input(tensor_input: np.ndarray, input_tensor: str = "nhwc", input_dtype: str = "int") -> np.ndarray:
    """frigate/object_detection/base.py ``_transform_input`` with util.py's ``tensor_transform``."""
    transform = {"nhwc": None, "nchw": (0, 3, 1, 2), "hwnc": (1, 2, 0, 3), "hwcn": (1, 2, 3, 0)}[input_tensor]
    if transform:
        tensor_input = np.transpose(tensor_input, transform)
    if input_dtype == "float":
        tensor_input = tensor_input.astype(np.float32)
        tensor_input /= 255
    elif input_dtype == "float_denorm":
        tensor_input = tensor_input.astype(np.float32)
    return tensor_input


def load_labels(path: Path, prefill: int = 91) -> dict[int, str]:
    """frigate/util/builtin.py ``load_labels``."""
    with open(path, encoding="utf-8") as f:
        labels = {index: "unknown" for index in range(prefill)}
        lines = f.readlines()
        if not lines:
            return {}
        if lines[0].split(" ", maxsplit=1)[0].isdigit():
            pairs = [line.split(" ", maxsplit=1) for line in lines]
            labels.update({int(index): label.strip() for index, label in pairs})
        else:
            labels.update({index: line.strip() for index, line in enumerate(lines)})
        return labels


def objects(raw: np.ndarray, labels: dict[int, str], threshold: float = 0.4) -> list:
    """frigate/object_detection/base.py ``RemoteObjectDetector.detect``'s loop over the [20, 6] output."""
    detections = []
    for d in raw:
        if d[1] < threshold:
            break
        detections.append((labels[int(d[0])], float(d[1]), (d[2], d[3], d[4], d[5])))
    return detections


# -------------------------------------------------------------------------------------------------- the server
class Server:
    """``lighthead-edge serve --frigate ipc://PATH`` as a subprocess, its stderr collected line by line."""

    def __init__(self, bundle: Path, socket_path: Path, *args: object) -> None:
        self.socket_path, self.endpoint = socket_path, f"ipc://{socket_path}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "OPENVINO_TELEMETRY": "0"}
        engine = ["--backend", "openvino", "--precision", "fp32", "--threads", "1"]
        command = [sys.executable, "-m", "lighthead_edge.cli", "serve", "--model", str(bundle), "--frigate",
                   self.endpoint, *engine, *map(str, args)]  # fmt: skip
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        self.lines: list[str] = []
        self._serving = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("serving "):
                self._serving.set()
        self._serving.set()

    def wait_serving(self, timeout: float = 60) -> Server:
        assert self._serving.wait(timeout) and self.proc.poll() is None, "\n".join(self.lines)
        return self

    def finish(self, sig: signal.Signals | None, timeout: float = 20) -> int:
        if sig is not None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        time.sleep(0.05)  # the reader thread takes the last lines
        return code

    def wait_line(self, needle: str, timeout: float = 5) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = [line for line in self.lines if needle in line]
            if found:
                return found[-1]
            time.sleep(0.05)
        raise AssertionError(f"no line with {needle!r} in:\n" + "\n".join(self.lines))


@pytest.fixture(scope="module")
def frames(assets: ExportedAssets) -> list[np.ndarray]:
    """The val split's 16 images (120x160 BGR) as Frigate tensors: a square region (x 20..140) resized to 160x160."""
    images = json.loads(assets.val_json.read_text())["images"]
    return [create_tensor_input(cv2.imread(str(assets.val_json.parent / im["file_name"])), (20, 0, 140, 120))
            for im in images]  # fmt: skip


@pytest.fixture(scope="module")
def detector(assets: ExportedAssets):
    from lighthead_edge.runtime.detector import Detector

    return Detector(assets.bundle, "openvino", threads=1, precision="fp32")


@pytest.fixture(scope="module")
def server(assets: ExportedAssets, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("frigate")
    srv = Server(assets.bundle, root / "zmq_detector", "--min-score", 0, "--labelmap", root / "labelmap.txt",
                 "--stats-every", 0.5).wait_serving()  # fmt: skip
    yield srv
    if srv.proc.poll() is None:
        assert srv.finish(signal.SIGTERM) == 0, "\n".join(srv.lines)


def expected_rows(detector, tensor_nhwc_bgr: np.ndarray) -> np.ndarray:
    """The Detector's own detections on the frame, as Frigate's rows: label - 1, score, box / (H, W), top 20."""
    frame = tensor_nhwc_bgr[0]
    h, w = frame.shape[:2]
    dets = detector(frame)
    rows = np.zeros((20, 6), np.float32)
    for i, (box, score, label) in enumerate(list(zip(dets.boxes, dets.scores, dets.labels))[:20]):
        x1, y1, x2, y2 = (float(v) for v in box)
        rows[i] = [label - 1, score, y1 / h, x1 / w, y2 / h, x2 / w]
    return np.clip(rows, 0, None)


# ------------------------------------------------------------------------------------------------------- tests
def test_labelmap_is_what_frigate_reads(server: Server, detector) -> None:
    labels = load_labels(server.socket_path.parent / "labelmap.txt")
    assert [labels[i] for i in range(len(detector.names))] == detector.names
    assert (server.socket_path.parent / "labelmap.txt").read_text() == "0 circle\n1 square\n2 triangle\n3 star\n"


def test_replies_are_the_detectors_detections(server: Server, detector, frames: list[np.ndarray]) -> None:
    client = FrigateZmqDetector(server.endpoint)
    try:
        assert client._model_ready, "Frigate's model handshake failed:\n" + "\n".join(server.lines)
        nonsquare = create_tensor_input(frames[0][0], (0, 0, 160, 160), width=192, height=128)  # model 192x128
        found = 0
        for tensor in [*frames, nonsquare]:
            raw = client.detect_raw(transform_input(tensor))
            assert raw.shape == (20, 6) and raw.dtype == np.float32
            want = expected_rows(detector, tensor)
            np.testing.assert_allclose(raw, want, rtol=0, atol=1e-6)
            n = int((want[:, 1] > 0).sum())
            assert np.all(raw[n:] == 0) and np.all(np.diff(raw[:n, 1]) <= 0)  # by score, then zero rows
            assert np.all((raw[:n, 2:] >= 0) & (raw[:n, 2:] <= 1))
            found += n
        assert found > 0, "the tiny model found nothing on 17 frames: the comparison proved little"
        labels = load_labels(server.socket_path.parent / "labelmap.txt")
        assert {name for name, _, _ in objects(raw, labels, threshold=0.0)} <= set(detector.names)
    finally:
        client.close()


def test_reply_time(server: Server, detector, frames: list[np.ndarray]) -> None:
    client = FrigateZmqDetector(server.endpoint)
    try:
        tensor = transform_input(frames[1])
        client.detect_raw(tensor)  # warm
        times = []
        for _ in range(20):
            start = time.perf_counter()
            client.detect_raw(tensor)
            times.append((time.perf_counter() - start) * 1000)
        local = []
        for _ in range(20):
            start = time.perf_counter()
            detector(tensor[0])
            local.append((time.perf_counter() - start) * 1000)
    finally:
        client.close()
    median = float(np.median(times))
    print(f"\nfrigate zmq reply: median {median:.1f} ms over 20 requests (160x160 uint8 nhwc, tiny bundle 128x128, "
          f"openvino fp32, 1 thread); the Detector in-process {np.median(local):.1f} ms")  # fmt: skip
    assert median < REQUEST_TIMEOUT_MS, "slower than Frigate's default request_timeout_ms: every frame would time out"


def _raw_request(endpoint: str, frames: list[bytes]) -> list[bytes]:
    context = zmq.Context()
    sock = context.socket(zmq.REQ)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send_multipart(frames)
        return sock.recv_multipart()
    finally:
        sock.close()
        context.term()


def test_malformed_requests_get_no_detections(server: Server, detector, frames: list[np.ndarray]) -> None:
    tensor = frames[2]
    good = {"shape": list(tensor.shape), "dtype": "uint8", "model_type": "ssd"}
    cases = {
        "not JSON": [b"\x00garbage", tensor.tobytes()],
        "tensor bytes": [json.dumps(good).encode(), tensor.tobytes()[:-1]],
        "dtype 'int16'": [json.dumps({**good, "dtype": "int16"}).encode(), tensor.tobytes()],
        "none of Frigate's layouts": [json.dumps({**good, "shape": [1, 160, 120, 4]}).encode(), tensor.tobytes()],
        "not a list of positive ints": [json.dumps({**good, "shape": "1x160"}).encode(), tensor.tobytes()],
        "not an object": [b"[1, 2]", tensor.tobytes()],
        "got 3": [json.dumps(good).encode(), tensor.tobytes(), b"extra"],
        "got 1": [json.dumps(good).encode()],
    }
    decoder = FrigateZmqDetector.__new__(FrigateZmqDetector)
    decoder._zero_result = np.zeros((20, 6), np.float32)
    for needle, request in cases.items():
        reply = _raw_request(server.endpoint, request)
        assert needle in json.loads(reply[0])["error"]
        raw = decoder._decode_response(reply)  # what Frigate makes of it: no detections
        assert raw.shape == (20, 6) and raw.dtype == np.float32 and not raw.any()
    upload = _raw_request(server.endpoint, [json.dumps({"model_data": True, "model_name": "m"}).encode(), b"onnx"])
    assert json.loads(upload[0])["model_saved"] is False  # Frigate's _send_model_data would return False
    for needle in cases:
        assert any(line.startswith("warning: frigate request") and needle in line for line in server.lines), needle
    client = FrigateZmqDetector(server.endpoint)  # the server keeps serving
    try:
        np.testing.assert_allclose(client.detect_raw(tensor), expected_rows(detector, tensor), rtol=0, atol=1e-6)
    finally:
        client.close()
    line = server.wait_line(f"{len(cases) + 1} errors")  # the periodic stats line counts them (maybe more later)
    assert "reply p50" in line and "p95" in line


def test_a_slow_server_times_out_as_frigate_does(server: Server, detector, frames: list[np.ndarray]) -> None:
    """The server stops answering (SIGSTOP): Frigate's request times out after 200 ms, it recreates its socket,
    its model handshake waits for the server (SIGCONT 1 s later) and the frame gives zeros; the next frame works."""
    tensor = frames[3]
    client = FrigateZmqDetector(server.endpoint)
    try:
        first_socket = client._socket
        server.proc.send_signal(signal.SIGSTOP)
        resume = threading.Timer(1.0, server.proc.send_signal, (signal.SIGCONT,))
        resume.start()
        start = time.monotonic()
        raw = client.detect_raw(tensor)
        elapsed = time.monotonic() - start
        resume.join()
        assert not raw.any() and client._socket is not first_socket and client._model_ready
        assert 0.9 < elapsed < 10, elapsed  # the timeout, then the handshake waited for the server to come back
        np.testing.assert_allclose(client.detect_raw(tensor), expected_rows(detector, tensor), rtol=0, atol=1e-6)
    finally:
        server.proc.send_signal(signal.SIGCONT)
        client.close()


def test_signals_shut_down_cleanly_and_frigate_reconnects(
    assets: ExportedAssets, tmp_path: Path, detector, frames: list[np.ndarray]
) -> None:
    """SIGTERM: exit 0, stats, socket file removed. Frigate's next frame times out (nobody there), its handshake
    waits for a new server, and the frame after works. SIGINT stops that one as cleanly."""
    path = tmp_path / "zmq_detector"
    first = Server(assets.bundle, path, "--min-score", 0).wait_serving()
    tensor = frames[4]
    client = FrigateZmqDetector(first.endpoint)
    later: list[Server] = []
    restart = threading.Timer(0.5, lambda: later.append(Server(assets.bundle, path, "--min-score", 0)))
    try:
        np.testing.assert_allclose(client.detect_raw(tensor), expected_rows(detector, tensor), rtol=0, atol=1e-6)
        assert first.finish(signal.SIGTERM) == 0, "\n".join(first.lines)
        assert not path.exists()
        assert "1 detect" in first.lines[-1] and "stopped by SIGTERM" in first.lines[-1], first.lines
        assert not any("Traceback" in line for line in first.lines)
        restart.start()
        start = time.monotonic()
        assert not client.detect_raw(tensor).any()
        assert time.monotonic() - start < 30 and client._model_ready
        second = later[0].wait_serving()
        np.testing.assert_allclose(client.detect_raw(tensor), expected_rows(detector, tensor), rtol=0, atol=1e-6)
        assert second.finish(signal.SIGINT) == 0, "\n".join(second.lines)
        assert not path.exists() and "stopped by SIGINT" in second.lines[-1]
    finally:
        client.close()
        if restart.is_alive():
            restart.join()
        for srv in (first, *later):
            if srv.proc.poll() is None:
                srv.proc.kill()


def test_frigate_float_layouts_and_rgb(assets: ExportedAssets, tmp_path: Path, server: Server,
                                      frames: list[np.ndarray]) -> None:  # fmt: skip
    """Frigate configured nchw / hwcn, float, rgb: the same frame gives the same reply, bit for bit, as nhwc uint8
    bgr; a uint8 request is refused (dtype); --max-requests ends the server (exit 0, socket removed)."""
    float_server = Server(assets.bundle, tmp_path / "zmq_float", "--min-score", 0, "--input-pixel-format", "rgb",
                          "--input-dtype", "float", "--max-requests", 4).wait_serving()  # fmt: skip
    tensor = frames[5]
    reference = FrigateZmqDetector(server.endpoint)
    client = FrigateZmqDetector(float_server.endpoint)
    try:
        want = reference.detect_raw(transform_input(tensor))
        rgb = tensor[..., ::-1]
        for layout in ("nchw", "hwcn"):
            sent = transform_input(rgb, layout, "float")
            assert sent.dtype == np.float32 and sent.shape[0 if layout == "nchw" else 2] in (1, 3)
            np.testing.assert_array_equal(client.detect_raw(sent), want)
        refused = _raw_request(float_server.endpoint, [client._build_header(tensor), tensor.tobytes()])
        assert "dtype 'uint8'" in json.loads(refused[0])["error"] and "--input-dtype float" in refused[0].decode()
        assert float_server.finish(None) == 0, "\n".join(float_server.lines)
        assert not (tmp_path / "zmq_float").exists()
        assert "2 detect, 1 model checks, 1 errors" in float_server.lines[-1]
        assert "stopped by --max-requests 4" in float_server.lines[-1]
    finally:
        reference.close()
        client.close()
        if float_server.proc.poll() is None:
            float_server.proc.kill()


def _one_error_line(code: int, err: str, want_code: int, needle: str) -> None:
    lines = err.strip().splitlines()
    assert code == want_code and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (code, err)


def test_bad_input_is_one_line(cli, assets: ExportedAssets, server: Server, tmp_path: Path) -> None:
    bundle = str(assets.bundle)
    regular = tmp_path / "not_a_socket"
    regular.write_text("keep me")
    cases = [
        (["--frigate", "udp://127.0.0.1:5555"], 2, "give ipc://PATH"),
        (["--frigate", "tcp://127.0.0.1:99999"], 2, "port in 1..65535"),
        (["--frigate", f"ipc://{tmp_path}/missing/zmq"], 2, "does not exist"),
        (["--frigate", f"ipc://{regular}"], 2, "is not a socket"),
        (["--frigate", server.endpoint], 2, "another server is listening"),
        (["--frigate", f"ipc://{tmp_path}/" + "x" * 120], 2, "at most 107 bytes"),
        (["--frigate", f"ipc://{tmp_path}/zmq", "--model", str(tmp_path / "no_bundle")], 5, "no_bundle"),
        (["--frigate", f"ipc://{tmp_path}/zmq", "--labelmap", str(tmp_path)], 7, "--labelmap"),
        (["--model", bundle], 2, "--frigate"),
        (["--frigate", f"ipc://{tmp_path}/zmq", "--min-score", "1.5"], 2, "--min-score"),
        (["--frigate", f"ipc://{tmp_path}/zmq", "--max-requests", "0"], 2, "--max-requests"),
        (["--frigate", f"ipc://{tmp_path}/zmq", "--stats-every", "nan"], 2, "--stats-every"),
        (["--frigate", f"ipc://{tmp_path}/zmq", "--input-dtype", "half"], 2, "--input-dtype"),
        (["--frigate", f"ipc://{tmp_path}/zmq", "--input-pixel-format", "yuv"], 2, "--input-pixel-format"),
    ]
    for args, want_code, needle in cases:
        code, _, err = cli("serve", *(["--model", bundle] if "--model" not in args else []), *args)
        _one_error_line(code, err, want_code, needle)
    assert regular.read_text() == "keep me" and server.socket_path.exists() and not (tmp_path / "zmq").exists()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:  # a port in use: found at bind, after the bundle loaded; still one line
        code, _, err = cli("serve", "--model", bundle, "--frigate", f"tcp://127.0.0.1:{busy.getsockname()[1]}")
        _one_error_line(code, err, 2, "can't bind")
    finally:
        busy.close()
    assert server.proc.poll() is None  # the live server was left alone


# Frigate's field names: ZmqDetectorConfig (+ BaseDetectorConfig) in zmq_ipc.py, ModelConfig in detector_config.py
DETECTOR_FIELDS = {"type", "endpoint", "request_timeout_ms", "linger_ms", "model", "model_path"}
MODEL_FIELDS = {"path", "labelmap_path", "width", "height", "labelmap", "attributes_map", "input_tensor",
                "input_pixel_format", "input_dtype", "model_type"}  # fmt: skip


def _sections(text: str) -> dict[str, dict[str, str]]:
    """The two-level keys of a simple YAML file: {"model": {"width": "512", ...}, "detectors.lighthead": {...}}."""
    sections: dict[str, dict[str, str]] = {}
    path: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #")[0].rstrip()
        if not line.strip() or line.lstrip().startswith(("#", "-")):
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        key, _, value = line.strip().partition(":")
        path = path[:depth] + [key]
        if value.strip():
            sections.setdefault(".".join(path[:-1]), {})[key] = value.strip()
    return sections


def test_deploy_config_uses_frigates_names() -> None:
    text = (Path(__file__).resolve().parents[2] / "deploy" / "frigate" / "config.yml").read_text()
    sections = _sections(text)
    detector, model = sections["detectors.lighthead"], sections["model"]
    assert detector["type"] == "zmq" and set(detector) <= DETECTOR_FIELDS
    assert set(model) <= MODEL_FIELDS and {"path", "labelmap_path", "width", "height"} <= set(model)
    assert detector["endpoint"].startswith("ipc://") and "--frigate " + detector["endpoint"] in text
    assert "--labelmap " + model["labelmap_path"] in text
    assert model["input_pixel_format"] == "bgr" and model["input_dtype"] == "int"  # serve's defaults
    assert model["input_tensor"] in ("nhwc", "nchw", "hwnc", "hwcn")


def test_an_engine_failure_is_one_frame_of_no_detections() -> None:
    """In-process, no socket: a Detector that raises gives zeros + the error, counted; warnings are rate-limited."""
    from lighthead_edge.runtime.frigate import FrigateServer

    def broken(frame: np.ndarray):
        raise RuntimeError("engine lost")

    logged: list[str] = []
    server = FrigateServer(broken, "tcp://127.0.0.1:5555", log=logged.append)
    tensor = np.zeros((1, 32, 32, 3), np.uint8)
    request = [json.dumps({"shape": [1, 32, 32, 3], "dtype": "uint8"}).encode(), tensor.tobytes()]
    for _ in range(100):
        reply = server.handle(request)
    assert json.loads(reply[0])["error"] == "RuntimeError: engine lost"
    assert not np.frombuffer(reply[1], np.float32).any() and len(reply[1]) == 480
    assert server.stats.errors == 100 and server.stats.detections == 0
    assert len(logged) == 11 and "every 100th" in logged[9] and "request 100:" in logged[10]
