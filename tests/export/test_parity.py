"""Parity of the exported bundle with eager torch, per backend: the same detections and the same COCO AP.

Detections are compared on the original images (each runtime letterboxes and maps boxes back itself). FP32 must give
the same detections (matched boxes IoU >= 0.99, scores within 1e-3) and AP within 0.002 of torch; the FP16 IR,
whose weights are rounded, only AP within 0.005.
"""

from __future__ import annotations

import json

import pytest

from lighthead_edge.export import parity
from lighthead_edge.runtime import Detector

FP32 = ["onnxruntime/fp32", "openvino/fp32"]
ALL = [*FP32, "openvino/fp16"]
AP_TOLERANCE = {"fp32": 0.002, "fp16": 0.005}


@pytest.fixture(scope="module")
def eager_detections(assets, eager) -> list[dict]:
    """Eager torch detections of every val image, in original-image pixels (as the evaluation maps them)."""
    model, _ = eager
    return parity.eager_detections(model, assets.val_json)


@pytest.mark.parametrize("key", FP32)
def test_fp32_detections_equal_eager_torch(assets, eager, eager_detections, key) -> None:
    model, _ = eager
    backend, precision = key.split("/")
    detector = Detector(assets.bundle, backend, threads=2, precision=precision)
    result = parity.compare(detector, eager_detections, assets.val_json)
    assert result.matched > 50, "too few detections for a meaningful comparison"
    assert result.min_iou >= 0.99, f"{key}: min IoU {result.min_iou:.4f}"
    assert result.max_score_diff <= 1e-3, f"{key}: max score diff {result.max_score_diff:.2e}"
    # a detection may only appear on one side when its score sits on the threshold
    unmatched = result.unmatched_scores
    assert all(s < model.config.score_thresh + 1e-3 for s in unmatched), f"{key}: unmatched {unmatched}"


@pytest.mark.parametrize("key", ALL)
def test_ap_matches_torch(assets, key) -> None:
    """The AP measured at export time through the runtime, against torch's on the same images."""
    manifest = json.loads((assets.bundle / "manifest.json").read_text())
    results = manifest["measurements"]["results"]
    reference = results["torch/fp32"]["coco"]["AP"]
    assert reference > 0.01, "the fixture model should have learnt something"
    ap = results[key]["coco"]["AP"]
    assert abs(ap - reference) <= AP_TOLERANCE[key.split("/")[1]], f"{key}: AP {ap:.4f}, torch {reference:.4f}"
