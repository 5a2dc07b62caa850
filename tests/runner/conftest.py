"""Fixtures of the video-runner tests: one real tiny bundle per session, generated media (videos written by OpenCV,
raw frames, image folders, a local MJPEG server that goes away), and a subprocess runner. Everything runs at one
thread: the runner is tested for behaviour, not speed."""

from __future__ import annotations

import http.server
import os
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import pytest
from runner_media import make_frame, runner_command, write_video  # tests/runner is on sys.path (pytest rootdir mode)

CLASS_NAMES = ["cat", "dog"]


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real bundle (ONNX + OpenVINO IR) of an untrained 2-class tiny detector at 128x128, exported once.

    ``score_thresh=0`` so that even random weights give detections to write and draw.
    """
    import torch

    from lighthead_edge.config import ModelConfig
    from lighthead_edge.export.bundle import ExportSettings, export_bundle
    from lighthead_edge.modeling.detector import build_detector

    root = tmp_path_factory.mktemp("runner_bundle")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        config = ModelConfig(
            backbone="tiny", input_size=(128, 128), num_classes=2, score_thresh=0.0, rpn_post_nms_top_n_test=50
        )
        settings = ExportSettings(latency_runs=1, threads=1)
        return export_bundle(build_detector(config).eval(), CLASS_NAMES, root / "bundle", settings, log=lambda m: None)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def video_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 frames, 160x120, 20 fps, mp4v."""
    return write_video(tmp_path_factory.mktemp("media") / "clip.mp4", 40)


@pytest.fixture(scope="session")
def video_avi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames, 160x120, MJPG in AVI (an AVI cut short still decodes up to the cut)."""
    return write_video(tmp_path_factory.mktemp("media") / "clip.avi", 30)


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment of a subprocess runner: one thread, its own cache folder (no remembered bundle), no bundle env."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LIGHTHEAD_EDGE_BUNDLE", raising=False)
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def run_cli(isolated_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``lighthead-edge run ARGS`` to completion; ``input`` (bytes) goes to its stdin."""

    def run(*args: object, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            runner_command(*args), input=input, capture_output=True, env=isolated_env, timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )  # fmt: skip

    return run


# ------------------------------------------------------------------------------------------------ MJPEG server
@dataclass
class MjpegServer:
    """A local multipart/x-mixed-replace server. Connection ``k`` streams ``plan[k]`` = (frames, (width, height))
    at ``fps`` and then hangs up; after the last entry of the plan the server shuts down entirely."""

    plan: list[tuple[int, tuple[int, int]]]
    fps: float = 25.0
    connections: int = 0
    sent: list[int] = field(default_factory=list)
    url: str = ""
    _server: socketserver.TCPServer | None = None

    def handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        k = self.connections
        self.connections += 1
        if k >= len(self.plan):
            handler.send_error(503)
            return
        frames, (width, height) = self.plan[k]
        handler.send_response(200)
        handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        handler.end_headers()
        self.sent.append(0)
        for i in range(frames):
            jpg = cv2.imencode(".jpg", make_frame(i, width, height))[1].tobytes()
            part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
            try:
                handler.wfile.write(part + jpg + b"\r\n")
                handler.wfile.flush()
            except OSError:
                return
            self.sent[-1] += 1
            time.sleep(1.0 / self.fps)
        if k == len(self.plan) - 1:
            threading.Thread(target=self.go_away, daemon=True).start()

    def go_away(self) -> None:
        """Stop serving and close the listening socket: new connections are refused, as by a dead camera."""
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def mjpeg_server() -> Iterator[Callable[..., MjpegServer]]:
    """Start an :class:`MjpegServer` with a plan; it is closed at the end of the test."""
    servers: list[socketserver.TCPServer] = []

    def start(plan: list[tuple[int, tuple[int, int]]], fps: float = 25.0) -> MjpegServer:
        state = MjpegServer(plan, fps)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                state.handle(self)

            def log_message(self, *args: object) -> None:
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        server = Server(("127.0.0.1", 0), Handler)
        state._server = server
        state.url = f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
