"""Fixtures for the compression tests: a saved tiny checkpoint and a fixed set of RoIs on a 128x128 image (pruning).
Quantization and benchmarks use the shared ``assets`` fixture of ``tests/conftest.py``."""

from __future__ import annotations

import pytest
import torch

CLASSES = ["circle", "square", "triangle", "star"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, tiny_detector):
    from lighthead_edge.modeling.checkpoint import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("prune") / "tiny.pt", tiny_detector, CLASSES)


@pytest.fixture(scope="module")
def rois() -> torch.Tensor:
    """Tensor[12, 5]: (batch index, x1, y1, x2, y2) boxes of assorted sizes inside a 128x128 image."""
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(12, 2, generator=g) * 80
    wh = torch.rand(12, 2, generator=g) * 40 + 8
    return torch.cat([torch.zeros(12, 1), xy, xy + wh], dim=1)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(2)) * 255
