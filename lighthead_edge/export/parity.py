"""Detection-level parity of a bundle with eager torch: the same images, matched box by box.

Detections are compared on the original images (each side letterboxes and maps boxes back itself). Used by the
parity tests and by ``scripts/check_parity.py`` for real models and data sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes a [N, 4] and b [M, 4] -> [N, M]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match(expected: dict, actual) -> tuple[list[tuple[float, float]], list[float]]:
    """Greedy same-label matching by IoU -> ([(iou, |score diff|)] of matched pairs, scores of unmatched ones).

    Both sides' detections count: an unmatched one on either side is reported by its score.
    """
    iou = box_iou(expected["boxes"], actual.boxes)
    same = expected["labels"][:, None] == actual.labels[None, :]
    iou = np.where(same, iou, -1.0)
    pairs, used, unmatched = [], set(), []
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


def eager_detections(model, coco_json: str | Path) -> list[dict]:
    """Eager torch detections of every image of a COCO json, in original-image pixels (as evaluation maps them)."""
    import torch

    from lighthead_edge.data.coco import CocoDetection
    from lighthead_edge.data.transforms import scale_boxes

    dataset = CocoDetection(coco_json, input_size=model.config.input_size)
    out = []
    with torch.no_grad():
        for index in range(len(dataset)):
            image, target = dataset[index]
            det = model(image[None])[0]
            boxes = scale_boxes(det["boxes"].numpy(), target["scale"], target["orig_size"])
            out.append({"boxes": boxes, "scores": det["scores"].numpy(), "labels": det["labels"].numpy()})
    return out


@dataclass(frozen=True)
class Parity:
    """``matched`` pairs (same label, IoU > 0.5), of which ``exact`` have IoU >= 0.99 and scores within 1e-3."""

    matched: int
    exact: int
    min_iou: float
    max_score_diff: float
    unmatched_scores: list[float]


def compare(detector, expected: list[dict], coco_json: str | Path) -> Parity:
    """Run ``detector`` (a runtime ``Detector``) over the images and match against ``expected``."""
    from lighthead_edge.data.cocojson import image_paths
    from lighthead_edge.data.transforms import read_image

    pairs, unmatched = [], []
    for path, exp in zip(image_paths(coco_json), expected, strict=True):
        p, u = match(exp, detector(read_image(path)))
        pairs += p
        unmatched += u
    ious = [p[0] for p in pairs] or [float("nan")]
    diffs = [p[1] for p in pairs] or [float("nan")]
    exact = sum(1 for iou, diff in pairs if iou >= 0.99 and diff <= 1e-3)
    return Parity(len(pairs), exact, min(ious), max(diffs), unmatched)
