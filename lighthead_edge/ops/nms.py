"""Non-maximum suppression in pure torch (torchvision can't be installed beside the pinned torch here)."""

from __future__ import annotations

import torch
from torch import Tensor

from lighthead_edge.ops.boxes import box_iou


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS, the same result as ``torchvision.ops.nms``.

    Args:
        boxes (Tensor[N, 4]): xyxy.
        scores (Tensor[N]).
        iou_threshold: boxes overlapping a kept, higher-scoring box by more than this are dropped.

    Returns:
        Tensor[K] int64: indices of the kept boxes, by decreasing score; equal scores keep their input order (the
        lower index first), as ONNX Runtime's NonMaxSuppression does. Ties are common, not rare: every anchor over
        a letterbox's flat padding gets the same score.

    Note:
        Greedy NMS is the unique fixed point of ``keep[i] = not any(keep[j] and iou[j, i] > t for j before i)``
        (by induction on i), and iterating that map from ``keep = all`` fixes one more leading box each round, so
        it reaches the fixed point in at most "longest suppression chain" rounds, a handful in practice. Each
        round is one (N x N) boolean matrix-vector product instead of N Python steps.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order]
    suppresses = torch.triu(box_iou(b, b) > iou_threshold, diagonal=1)  # [j, i]: j before i and overlapping
    keep = torch.ones(len(b), dtype=torch.bool, device=b.device)
    for _ in range(len(b)):
        new_keep = ~(suppresses & keep[:, None]).any(dim=0)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep]


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS done independently per category ``idxs`` (Tensor[N]); same contract as ``nms``."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    # shift every category to its own region so boxes of different categories never overlap
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)
