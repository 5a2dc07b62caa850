"""Fixtures of the stream tests: a real tiny bundle, GStreamer's RTSP server (started, killed, paused and restarted
by the tests on a port of their own), a silent TCP listener, and the runner as a subprocess."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from streams_lib import RtspServer, SilentServer, free_port, require_gst_rtsp, runner_command


@pytest.fixture(scope="session")
def stream_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real bundle of an untrained 2-class tiny detector at 128x128, exported once (``score_thresh=0``: even
    random weights give detections to write). ONNX only, run by ONNX Runtime: the streams are under test, not the
    engine, and the OpenVINO conversion would add about 15 s on a busy 2-vCPU host."""
    import torch

    from lighthead_edge.config import ModelConfig
    from lighthead_edge.export.bundle import ExportFormat, ExportSettings, export_bundle
    from lighthead_edge.modeling.detector import build_detector

    root = tmp_path_factory.mktemp("stream_bundle")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        config = ModelConfig(
            backbone="tiny", input_size=(128, 128), num_classes=2, score_thresh=0.0, rpn_post_nms_top_n_test=50
        )
        settings = ExportSettings(formats=(ExportFormat.ONNX,), latency_runs=1, threads=1)
        model = build_detector(config).eval()
        return export_bundle(model, ["cat", "dog"], root / "bundle", settings, log=lambda m: None)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def gst_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GStreamer's plugin registry for the servers of this session (built by the first one, about 1 s)."""
    require_gst_rtsp()
    return tmp_path_factory.mktemp("gst") / "registry.bin"


@pytest.fixture
def rtsp_server(gst_registry: Path) -> Iterator[Callable[..., RtspServer]]:
    """``rtsp_server(size=..., codec=..., auth=...)`` -> a started :class:`RtspServer` on a free port; all are
    killed at the end of the test."""
    servers: list[RtspServer] = []

    def start(**options: object) -> RtspServer:
        server = RtspServer(free_port(), gst_registry, **options)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        if server.proc is not None and server.proc.poll() is None:
            server.resume()  # a paused server can't act on SIGKILL's teardown of its sockets until it runs
            server.kill()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def runner_env(tmp_path: Path) -> dict[str, str]:
    """Environment of a subprocess runner: one thread, its own cache folder, no bundle env."""
    env = {k: v for k, v in os.environ.items() if k != "LIGHTHEAD_EDGE_BUNDLE"}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", XDG_CACHE_HOME=str(tmp_path / "cache"))
    return env


@pytest.fixture
def start_runner(runner_env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen]]:
    """``start_runner(*args)`` -> ``lighthead-edge run ARGS`` running (text pipes); killed if still running at the
    end."""
    procs: list[subprocess.Popen] = []

    def start(*args: object) -> subprocess.Popen:
        proc = subprocess.Popen(runner_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=runner_env, text=True)  # fmt: skip
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
