"""Fixtures of the export tests (the shared ``assets`` fixture is in ``tests/conftest.py``)."""

from __future__ import annotations

import pytest
from exported import ExportedAssets


@pytest.fixture(scope="session")
def eager(assets: ExportedAssets):
    """The checkpoint's eager torch model, in eval mode, and its class names."""
    from lighthead_edge.modeling.checkpoint import load_checkpoint

    model, class_names, _ = load_checkpoint(assets.checkpoint)
    return model, class_names
