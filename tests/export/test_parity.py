"""Parity of the exported bundle with eager torch, per backend: the same detections and the same COCO AP.

Detections are compared on the original images (each runtime letterboxes and maps boxes back itself). FP32 must give
the same detections (matched boxes IoU >= 0.99, scores within 1e-3) and AP within 0.002 of torch; the FP16 IR,
whose weights are rounded, only AP within 0.005.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lighthead_edge.data.coco import CocoDetection
from lighthead_edge.data.transforms import read_image, scale_boxes
from lighthead_edge.runtime import Detector

FP32 = ["onnxruntime/fp32", "openvino/fp32"]
ALL = [*FP32, "openvino/fp16"]
AP_TOLERANCE = {"fp32": 0.002, "fp16": 0.005}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes a [N, 4] and b [M, 4] -> [N, M]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def match(expected: dict, actual) -> tuple[list[tuple[float, float]], list[float]]:
    """Greedy same-label matching by IoU -> ([(iou, |score diff|)] of matched pairs, scores of unmatched ones).

    Both sides' detections count: an unmatched one on either side is reported by its score.
    """
    iou = box_iou(expected["boxes"], actual.boxes)
    same = expected["labels"][:, None] == actual.labels[None, :]
    iou = np.where(same, iou, -1.0)
    pairs, used = [], set()
    unmatched = []
    for i in np.argsort(-expected["scores"]):
        order = [j for j in np.argsort(-iou[i]) if j not in used and iou[i, j] >= 0]
        if order and iou[i, order[0]] > 0.5:
            j = order[0]
            used.add(j)
            pairs.append((float(iou[i, j]), float(abs(expected["scores"][i] - actual.scores[j]))))
        else:
            unmatched.append(float(expected["scores"][i]))
    unmatched += [float(actual.scores[j]) for j in range(len(actual)) if j not in used]
    return pairs, unmatched


@pytest.fixture(scope="module")
def eager_detections(assets, eager) -> list[dict]:
    """Eager torch detections of every val image, in original-image pixels (as the evaluation maps them)."""
    model, _ = eager
    dataset = CocoDetection(assets.val_json, input_size=model.config.input_size)
    out = []
    with torch.no_grad():
        for index in range(len(dataset)):
            image, target = dataset[index]
            det = model(image[None])[0]
            boxes = scale_boxes(det["boxes"].numpy(), target["scale"], target["orig_size"])
            out.append({"boxes": boxes, "scores": det["scores"].numpy(), "labels": det["labels"].numpy()})
    return out


@pytest.mark.parametrize("key", FP32)
def test_fp32_detections_equal_eager_torch(assets, eager, eager_detections, key) -> None:
    model, _ = eager
    backend, precision = key.split("/")
    detector = Detector(assets.bundle, backend, threads=2, precision=precision)
    with open(assets.val_json) as f:
        images = json.load(f)["images"]
    pairs, unmatched = [], []
    for im, expected in zip(images, eager_detections, strict=True):
        actual = detector(read_image(assets.val_json.parent / im["file_name"]))
        p, u = match(expected, actual)
        pairs += p
        unmatched += u
    assert len(pairs) > 50, "too few detections for a meaningful comparison"
    ious, diffs = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    assert ious.min() >= 0.99, f"{key}: min IoU {ious.min():.4f}"
    assert diffs.max() <= 1e-3, f"{key}: max score diff {diffs.max():.2e}"
    # a detection may only appear on one side when its score sits on the threshold
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
