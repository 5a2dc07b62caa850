"""Shared fixtures, each built once per session: a small synthetic COCO set, a tiny detector, and the exported
assets (a tiny trained checkpoint, its val split and its bundle)."""

from __future__ import annotations

import os
import sys

import pytest
from exported import CHECKPOINT, ExportedAssets, build_assets  # tests/ is on sys.path (pytest rootdir mode)

os.environ.setdefault("OPENVINO_TELEMETRY", "0")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep the tests' "last bundle" pointer (and other XDG caches) out of the user's ~/.cache."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="session")
def synth_set(tmp_path_factory) -> dict:
    """24 train / 8 val synthetic scenes at 128x128."""
    from lighthead_edge.data.synth import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("synth"), 24, 8, size=(128, 128), seed=3, progress=False)


@pytest.fixture(scope="session")
def tiny_config():
    from lighthead_edge.config import ModelConfig

    return ModelConfig(num_classes=4, backbone="tiny", input_size=(128, 128), rpn_post_nms_top_n_test=50)


@pytest.fixture(scope="session")
def tiny_detector(tiny_config):
    import torch

    from lighthead_edge.modeling.detector import build_detector

    torch.manual_seed(0)
    return build_detector(tiny_config).eval()


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> ExportedAssets:
    """The committed tiny trained checkpoint, a 16-image synthetic val split at 120x160 and the checkpoint's bundle
    (ONNX + OpenVINO FP32/FP16, measured on the val split), built once for the whole session."""
    if not CHECKPOINT.is_file():
        pytest.fail(f"{CHECKPOINT} is missing; run .venv/bin/python tests/export/data/make_tiny.py")
    return build_assets(tmp_path_factory.mktemp("exported"))


@pytest.fixture
def cli(monkeypatch, capsys):
    """cli(*args) -> (exit code, stdout, stderr) of ``lighthead-edge`` run in-process through its real entry point."""
    from lighthead_edge.cli import main

    def run(*args) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["lighthead-edge", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
