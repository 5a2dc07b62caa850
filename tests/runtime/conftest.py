"""Shared fixtures of the runtime tests: the bundle of the tiny checkpoint the export tests use (built once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lighthead_edge.export.testing import ExportedAssets, exported_assets

CHECKPOINT = Path(__file__).parents[1] / "export" / "data" / "tiny_synth_128.pt"


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> ExportedAssets:
    if not CHECKPOINT.is_file():
        pytest.fail(f"{CHECKPOINT} is missing; run .venv/bin/python tests/export/data/make_tiny.py")
    return exported_assets(tmp_path_factory.getbasetemp() / "exported", CHECKPOINT)
