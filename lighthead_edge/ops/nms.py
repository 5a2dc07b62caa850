"""Non-maximum suppression in pure torch (torchvision can't be installed beside the pinned torch here)."""

from __future__ import annotations

import torch
from torch import Tensor

from lighthead_edge.ops.boxes import box_iou

# boxes resolved together; 64-512 all measured within 25% of each other at 2000 RPN proposals, 128 the fastest
_BLOCK = 128


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, max_keep: int | None = None) -> Tensor:
    """Greedy NMS, the same result as ``torchvision.ops.nms``.

    Args:
        boxes (Tensor[N, 4]): xyxy.
        scores (Tensor[N]).
        iou_threshold: boxes overlapping a kept, higher-scoring box by more than this are dropped.
        max_keep: stop once this many boxes are kept; the result is then ``nms(...)[:max_keep]``, found
            without looking at the boxes after the last one kept.

    Returns:
        Tensor[K] int64: indices of the kept boxes, by decreasing score; equal scores keep their input order (the
        lower index first), as ONNX Runtime's NonMaxSuppression does. Ties are common, not rare: every anchor over
        a letterbox's flat padding gets the same score.

    Note:
        The sorted boxes are taken in blocks of ``_BLOCK``. A block's box is first dropped if a box kept from an
        earlier block overlaps it (one [kept x block] IoU); the survivors are then resolved among themselves:
        greedy NMS inside the block is the unique fixed point of ``keep[i] = alive[i] and not any(keep[j] and
        iou[j, i] > t for j before i)`` (by induction on i), and iterating that map from ``keep = alive`` fixes
        one more leading box each round, so it ends within "longest suppression chain" rounds, a handful in
        practice. The IoUs are those of the whole (N x N) matrix (each entry is computed the same way), so the
        result is the greedy one exactly; the work is (kept x N) instead of (N x N) per round, and ``max_keep``
        ends it early: 2000 RPN proposals, 512 kept, 160-200 ms -> 8-10 ms on 2 threads.
    """
    if max_keep is not None and max_keep < 0:
        raise ValueError(f"max_keep must be >= 0 or None, got {max_keep}")
    if boxes.numel() == 0 or max_keep == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order]
    kept_boxes = b[:0]
    kept: list[Tensor] = []
    count = 0
    for start in range(0, len(b), _BLOCK):
        block = b[start : start + _BLOCK]
        if len(kept_boxes):
            alive = ~(box_iou(kept_boxes, block) > iou_threshold).any(dim=0)
        else:
            alive = torch.ones(len(block), dtype=torch.bool, device=b.device)
        suppresses = torch.triu(box_iou(block, block) > iou_threshold, diagonal=1)  # [j, i]: j before i, overlapping
        keep = alive
        for _ in range(len(block)):
            new_keep = alive & ~(suppresses & keep[:, None]).any(dim=0)
            if torch.equal(new_keep, keep):
                break
            keep = new_keep
        kept.append(torch.nonzero(keep).flatten() + start)
        kept_boxes = torch.cat([kept_boxes, block[keep]])
        count += len(kept[-1])
        if max_keep is not None and count >= max_keep:
            break
    selected = torch.cat(kept)
    return order[selected if max_keep is None else selected[:max_keep]]


def batched_nms(
    boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float, max_keep: int | None = None
) -> Tensor:
    """NMS done independently per category ``idxs`` (Tensor[N]); same contract as ``nms``."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    # shift every category to its own region so boxes of different categories never overlap
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold, max_keep)
