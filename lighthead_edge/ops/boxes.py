"""Box arithmetic: IoU, the R-CNN box coding, clipping. Pure torch; every op also exports to ONNX."""

from __future__ import annotations

import math

import torch
from torch import Tensor

# exp() of a larger delta would overflow; detectron2 and torchvision use the same bound
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def box_area(boxes: Tensor) -> Tensor:
    """boxes (Tensor[N, 4]) xyxy -> Tensor[N]."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU of a (Tensor[N, 4]) and b (Tensor[M, 4]), xyxy -> Tensor[N, M]."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union.clamp(min=1e-9)


def clip_boxes(boxes: Tensor, height: float, width: float) -> Tensor:
    """Clip xyxy boxes (Tensor[..., 4]) to [0, width] x [0, height]."""
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


class BoxCoder:
    """The R-CNN box parametrisation (dx, dy, dw, dh), with per-coordinate weights.

    Args:
        weights: divides the targets (encode) and the deltas (decode); (1, 1, 1, 1) for the RPN and
            (10, 10, 5, 5) for the R-CNN head, as in Faster R-CNN.
    """

    def __init__(self, weights: tuple[float, float, float, float]) -> None:
        self.weights = weights

    def encode(self, reference: Tensor, proposals: Tensor) -> Tensor:
        """Deltas that turn proposals (Tensor[N, 4]) into reference boxes (Tensor[N, 4])."""
        wx, wy, ww, wh = self.weights
        pw = proposals[:, 2] - proposals[:, 0]
        ph = proposals[:, 3] - proposals[:, 1]
        px = proposals[:, 0] + 0.5 * pw
        py = proposals[:, 1] + 0.5 * ph
        gw = reference[:, 2] - reference[:, 0]
        gh = reference[:, 3] - reference[:, 1]
        gx = reference[:, 0] + 0.5 * gw
        gy = reference[:, 1] + 0.5 * gh
        return torch.stack(
            [wx * (gx - px) / pw, wy * (gy - py) / ph, ww * torch.log(gw / pw), wh * torch.log(gh / ph)], dim=1
        )

    def decode(self, deltas: Tensor, boxes: Tensor) -> Tensor:
        """Apply deltas (Tensor[N, 4*K]) to boxes (Tensor[N, 4]) -> Tensor[N, 4*K] xyxy."""
        wx, wy, ww, wh = self.weights
        widths = (boxes[:, 2] - boxes[:, 0])[:, None]
        heights = (boxes[:, 3] - boxes[:, 1])[:, None]
        ctr_x = boxes[:, 0, None] + 0.5 * widths
        ctr_y = boxes[:, 1, None] + 0.5 * heights
        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = (deltas[:, 2::4] / ww).clamp(max=BBOX_XFORM_CLIP)
        dh = (deltas[:, 3::4] / wh).clamp(max=BBOX_XFORM_CLIP)
        cx = dx * widths + ctr_x
        cy = dy * heights + ctr_y
        w = torch.exp(dw) * widths
        h = torch.exp(dh) * heights
        out = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=2)
        return out.reshape(deltas.shape[0], -1)
