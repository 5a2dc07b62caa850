"""Shared fixtures of the export tests: the committed tiny trained checkpoint, its eager model and its bundle."""

from __future__ import annotations

from pathlib import Path

import pytest

from lighthead_edge.export.testing import ExportedAssets, exported_assets

CHECKPOINT = Path(__file__).parent / "data" / "tiny_synth_128.pt"


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> ExportedAssets:
    """The tiny checkpoint, a 16-image synthetic val split and the checkpoint's bundle (built once per session)."""
    if not CHECKPOINT.is_file():
        pytest.fail(f"{CHECKPOINT} is missing; run .venv/bin/python tests/export/data/make_tiny.py")
    return exported_assets(tmp_path_factory.getbasetemp() / "exported", CHECKPOINT)


@pytest.fixture(scope="session")
def eager(assets: ExportedAssets):
    """The checkpoint's eager torch model, in eval mode, and its class names."""
    from lighthead_edge.modeling.checkpoint import load_checkpoint

    model, class_names, _ = load_checkpoint(assets.checkpoint)
    return model, class_names
