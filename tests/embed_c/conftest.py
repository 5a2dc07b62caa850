"""Fixtures of the C library tests: one build of deploy/c per session (the README's one command, into a temporary
folder), the synthetic bundle, a ctypes handle on the built library, and the val frames of the ``assets`` bundle."""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np
import pytest
from embed_c_lib import CBuild, build_c, load_library, make_fake_bundle, require_tools
from exported import ExportedAssets  # tests/ is on sys.path (pytest rootdir mode)

BUILD_TOOLS = ("cmake", "cc", "make", "pkg-config", "pkg-config:libcjson")
MODEL_HW = (128, 128)  # the assets bundle's graph input
VAL_HW = (120, 160)  # the val images' size (tests/exported.py VAL_SIZE)


@pytest.fixture(scope="session")
def c_build(tmp_path_factory: pytest.TempPathFactory) -> CBuild:
    """deploy/c built and installed once: ``bash deploy/c/build.sh PREFIX`` (build folder beside it)."""
    require_tools(*BUILD_TOOLS)
    return build_c(tmp_path_factory.mktemp("c_build"))


@pytest.fixture(scope="session")
def c_lib(c_build: CBuild) -> ctypes.CDLL:
    """The built liblighthead.so through ctypes (see embed_c_lib.CDetector)."""
    return load_library(c_build.library)


@pytest.fixture(scope="session")
def fake_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic bundle (embed_c_lib): fp32 and fp16 IRs of a tiny graph, 32x24 frames, 3 classes."""
    return make_fake_bundle(tmp_path_factory.mktemp("fake") / "bundle")


@pytest.fixture(scope="session")
def frame_in_bundle(assets: ExportedAssets, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The assets checkpoint exported frame-in (``export --frame-size 160x120``, OpenVINO only): the val images'
    own size goes in as it is, the letterbox happens in the graph."""
    from lighthead_edge.export.bundle import ExportFormat, ExportSettings, export_bundle
    from lighthead_edge.modeling.checkpoint import load_checkpoint

    model, class_names, _ = load_checkpoint(assets.checkpoint)
    settings = ExportSettings(formats=(ExportFormat.OPENVINO,), latency_runs=1, threads=1, frame_size=VAL_HW)
    out = tmp_path_factory.mktemp("frame_in") / "bundle"
    return export_bundle(model, class_names, out, settings, log=lambda message: None)


@pytest.fixture(scope="session")
def val_images(assets: ExportedAssets) -> np.ndarray:
    """The 16 val images of ``assets`` as they are: ndarray[16, 120, 160, 3] uint8."""
    import cv2

    images = json.loads(Path(assets.val_json).read_text())["images"]
    return np.stack([cv2.imread(str(Path(assets.val_json).parent / image["file_name"])) for image in images])


@pytest.fixture(scope="session")
def val_frames(val_images: np.ndarray) -> np.ndarray:
    """The val images letterboxed to the assets bundle's 128x128 input: ndarray[16, 128, 128, 3] uint8."""
    from lighthead_edge.data.transforms import letterbox

    return np.stack([letterbox(image, MODEL_HW)[0] for image in val_images])
