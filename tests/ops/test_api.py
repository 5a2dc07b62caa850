"""``lighthead_edge.ops`` is used like ``torchvision.ops``: functions and modules by name from the package."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

import lighthead_edge.ops as ops
from lighthead_edge.ops.ps_roi_align import PSRoIAlign


def test_the_package_exports_the_ops_not_their_modules() -> None:
    assert callable(ops.ps_roi_align) and ops.ps_roi_align.__name__ == "ps_roi_align"
    assert ops.PSRoIAlign is PSRoIAlign  # submodule imports keep working and give the same objects
    features = torch.arange(2 * 8 * 6 * 6, dtype=torch.float32).reshape(2, 8, 6, 6)
    rois = torch.tensor([[0, 0.0, 0.0, 5.0, 5.0], [1, 1.0, 2.0, 4.0, 6.0]])
    pooled = ops.ps_roi_align(features, rois, 2, 1.0, 2)
    assert pooled.shape == (2, 2, 2, 2)
    torch.testing.assert_close(ops.PSRoIAlign(2, 1.0, 2)(features, rois), pooled)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    assert ops.batched_nms(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 1, 1]), 0.5).tolist() == [0, 2]
    assert ops.box_iou(boxes[:1], boxes[:1]).item() == 1.0
    assert set(ops.__all__) >= {"ps_roi_align", "PSRoIAlign", "nms", "batched_nms", "box_iou", "BoxCoder",
                                "clip_boxes"}  # fmt: skip


def test_importing_ops_loads_no_export_code() -> None:
    code = "import json, sys, lighthead_edge.ops; print(json.dumps([m for m in sys.modules if 'lighthead_edge' in m]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert "lighthead_edge.ops.nms" in loaded
    assert "lighthead_edge.ops.ps_roi_align_export" not in loaded
    assert not any(m.startswith(("lighthead_edge.export", "lighthead_edge.modeling")) for m in loaded)
