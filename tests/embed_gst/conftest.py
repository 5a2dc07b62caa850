"""Fixtures of the GStreamer tests: Debian's GStreamer, its Python plugin loader and ffmpeg run for real (a missing one
is a failure naming it), a tiny bundle, a generated clip and the Python runtime's detections to hold results against.

Every gst-launch runs with its own registry cache (GST_REGISTRY in the session's tmp folder), so a test never reads or
writes the user's ~/.cache/gstreamer-1.0, and with the venvs taken off PATH: GStreamer's Python loader embeds
Debian's Python, which finds itself as ``python3`` on PATH (see deploy/gstreamer/README.md).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from gst_helpers import (
    DECODE,
    FRAMES,
    HEIGHT,
    REPO,
    SITE_PACKAGES,
    SYSTEM_PYTHON,
    VENV_BIN,
    WIDTH,
    gst_ok,
    read_raw,
    run,
    without_venvs,
)

TOOLS = ("gst-launch-1.0", "gst-inspect-1.0", "ffmpeg", "ffprobe")
ELEMENTS = ("videotestsrc", "avenc_mpeg4", "avdec_mpeg4", "avimux", "jpegenc", "decodebin", "videoconvert",
            "videoscale", "videorate", "tee", "fdsink")  # fmt: skip
SETUP_HINT = "install the Debian packages with scripts/setup_system.sh (as root)"


@pytest.fixture(scope="session")
def gst_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The documented environment of the element (README): GST_PLUGIN_PATH, PYTHONPATH with the venv's site-packages
    and the checkout; plus a private registry cache, one OpenMP thread and PATH without venvs. Fails, naming what is
    missing, when GStreamer, its Python loader, the elements the tests use, ffmpeg or Debian's python3-gi are absent."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found; {SETUP_HINT}")
    env = dict(os.environ)
    env.update(
        GST_PLUGIN_PATH=str(REPO / "deploy" / "gstreamer"),
        PYTHONPATH=os.pathsep.join([SITE_PACKAGES, str(REPO)]),
        GST_REGISTRY=str(tmp_path_factory.mktemp("gst") / "registry.bin"),
        PATH=without_venvs(env.get("PATH", "/usr/bin:/bin")),
        OMP_NUM_THREADS="1",
        OPENVINO_TELEMETRY="0",
    )  # fmt: skip
    env.pop("GST_DEBUG", None)
    if run(["gst-inspect-1.0", "python"], env).returncode != 0:
        pytest.fail(f"GStreamer's Python plugin loader is missing (gstreamer1.0-python3-plugin-loader); {SETUP_HINT}")
    absent = [e for e in ELEMENTS if run(["gst-inspect-1.0", "--exists", e], env).returncode != 0]
    if absent:
        pytest.fail(f"GStreamer lacks the elements {', '.join(absent)}; {SETUP_HINT}")
    probe = run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('Gst', '1.0')"], env)
    if probe.returncode != 0:
        pytest.fail(f"{SYSTEM_PYTHON} can't import gi (python3-gi): {probe.stderr.strip()}; {SETUP_HINT}")
    return env


@pytest.fixture(scope="session")
def recipe_env(gst_env: dict[str, str]) -> dict[str, str]:
    """The environment of the deploy/ recipes: ``lighthead-edge`` from the venv first on PATH, as with an activated
    venv (the recipes keep it away from gst-launch themselves)."""
    env = dict(gst_env)
    env["PATH"] = os.pathsep.join([str(VENV_BIN), gst_env["PATH"]])
    env["XDG_CACHE_HOME"] = str(Path(gst_env["GST_REGISTRY"]).parent / "xdg")  # no remembered bundle
    env.pop("LIGHTHEAD_EDGE_BUNDLE", None)
    return env


@pytest.fixture(scope="session")
def gst_bundle(assets) -> Path:
    """The suite's shared bundle (tests/conftest.py ``assets``: the tiny trained 4-class checkpoint at 128x128, ONNX +
    OpenVINO FP32/FP16), built once per session for every test that uses it."""
    return assets.bundle


@pytest.fixture(scope="session")
def clip(gst_env: dict[str, str], assets, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames at 160x120, 15 fps, MPEG-4 part 2 in AVI, encoded by ffmpeg: the 16 synthetic val scenes, then 14
    of them mirrored, so the detector has real objects to find."""
    import json

    import cv2

    val = Path(assets.val_json)
    images = [cv2.imread(str(val.parent / im["file_name"])) for im in json.loads(val.read_text())["images"]]
    frames = (images + [im[:, ::-1] for im in images])[:FRAMES]
    assert all(f.shape == (HEIGHT, WIDTH, 3) for f in frames), "the val scenes should be 160x120"
    folder = tmp_path_factory.mktemp("gst_media")
    raw, path = folder / "scenes.bgr", folder / "clip.avi"
    np.stack(frames).tofile(raw)
    proc = run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "rawvideo", "-pix_fmt", "bgr24",
                "-s", f"{WIDTH}x{HEIGHT}", "-r", "15", "-i", str(raw), "-c:v", "mpeg4", "-q:v", "2", str(path)],
               gst_env)  # fmt: skip
    assert proc.returncode == 0, f"ffmpeg could not make the clip: {proc.stderr}"
    return path


@pytest.fixture(scope="session")
def clip_frames(gst_env: dict[str, str], clip: Path) -> np.ndarray:
    """The clip decoded by the same GStreamer chain the element sees: ndarray[30, 120, 160, 3] uint8 BGR."""
    raw = clip.with_suffix(".bgr")
    gst_ok(gst_env, f"filesrc location={clip} ! {DECODE} ! filesink location={raw}")
    return read_raw(raw, WIDTH, HEIGHT)


@pytest.fixture(scope="session")
def detector(gst_bundle: Path):
    """The Python runtime on the bundle, OpenVINO FP32 at one thread, as the element is run in the tests."""
    from lighthead_edge.runtime.detector import Detector

    return Detector(gst_bundle, backend="openvino", precision="fp32", threads=1)


@pytest.fixture(scope="session")
def expected(detector) -> Callable[[np.ndarray, float], list[list[dict]]]:
    """expected(frames, min_score) -> per frame, the JSONL ``detections`` the Python runtime gives."""
    from lighthead_edge.runtime.outputs import detections_record

    def records(frames: np.ndarray, min_score: float = 0.0) -> list[list[dict]]:
        return [detections_record(i, 0.0, f.shape[:2], detector(f), min_score)["detections"] for i, f in
                enumerate(frames)]  # fmt: skip

    return records
