"""Fixtures for the compression tests: a saved tiny checkpoint and a fixed set of RoIs on a 128x128 image (pruning),
and one real ``lighthead-edge tune`` run (test_tune.py checks it; test_bench.py benchmarks its choice).
Quantization and benchmarks use the shared ``assets`` fixture of ``tests/conftest.py``."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from exported import CHECKPOINT, ExportedAssets

from lighthead_edge.measure import latencies

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


@dataclass
class Tuned:
    """One real ``lighthead-edge tune`` run on the tiny checkpoint (ONNX Runtime, budgets 8 and 30 plus its own)."""

    out: Path
    code: int
    stdout: str
    err: str
    schedules: list[dict]  # every joint timing it ran: {variant: {threads: stats}}


@pytest.fixture(scope="session")
def tuned(assets: ExportedAssets, tmp_path_factory: pytest.TempPathFactory) -> Tuned:
    import lighthead_edge.compress.tune as tune
    from lighthead_edge.cli import main

    schedules: list[dict] = []

    def spy(variants, settings, log=None):
        schedules.append(latencies(variants, settings, log))
        return schedules[-1]

    out = tmp_path_factory.mktemp("tune") / "tuned"
    args = ["tune", CHECKPOINT, "--val", assets.val_json, "--calib", assets.val_json, "--backend", "onnxruntime",
            "--rois", "8,30", "--max-drop", "0.02", "--calib-size", "4", "--threads", "1", "--runs", "3",
            "--out", out]  # fmt: skip
    stdout, stderr, code = io.StringIO(), io.StringIO(), 0
    with pytest.MonkeyPatch.context() as mp, redirect_stdout(stdout), redirect_stderr(stderr):
        mp.setattr(tune, "latencies", spy)
        mp.setattr(sys, "argv", ["lighthead-edge", *map(str, args)])
        try:
            main()
        except SystemExit as exc:
            code = exc.code
    return Tuned(out, code, stdout.getvalue(), stderr.getvalue(), schedules)
