"""Region proposal network: anchors at stride 16, objectness and box deltas, proposal decoding + NMS, and its loss."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lighthead_edge.ops.boxes import BoxCoder, box_iou, clip_boxes
from lighthead_edge.ops.nms import nms


def make_anchors(
    feat_h: int, feat_w: int, stride: int, scales: tuple[float, ...], ratios: tuple[float, ...], device=None
) -> Tensor:
    """Anchors of a stride-``stride`` map -> Tensor[feat_h * feat_w * A, 4] xyxy, ordered (y, x, anchor).

    An anchor of scale s and ratio r (= h / w) has area (s * stride)^2 and is centred on its cell's centre.
    """
    base = []
    for r in ratios:
        for s in scales:
            size = s * stride
            w, h = size / math.sqrt(r), size * math.sqrt(r)
            base.append([-w / 2, -h / 2, w / 2, h / 2])
    base_t = torch.tensor(base, dtype=torch.float32, device=device)
    ys = (torch.arange(feat_h, dtype=torch.float32, device=device) + 0.5) * stride
    xs = (torch.arange(feat_w, dtype=torch.float32, device=device) + 0.5) * stride
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)
    return (shifts + base_t[None]).reshape(-1, 4)


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then 1x1 objectness (A) and 1x1 deltas (4A)."""

    def __init__(self, in_channels: int, mid_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, mid_channels, 3, padding=1)
        self.cls_logits = nn.Conv2d(mid_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(mid_channels, 4 * num_anchors, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (Tensor[B, C, h, w]) -> objectness (Tensor[B, h*w*A]), deltas (Tensor[B, h*w*A, 4])."""
        t = F.relu(self.conv(x))
        b = x.shape[0]
        logits = self.cls_logits(t).permute(0, 2, 3, 1).reshape(b, -1)
        deltas = self.bbox_pred(t).permute(0, 2, 3, 1).reshape(b, -1, 4)
        return logits, deltas


@dataclass(frozen=True)
class RPNSettings:
    pre_nms_top_n: int
    post_nms_top_n: int
    nms_thresh: float
    min_size: float


class RegionProposalNetwork(nn.Module):
    """Turns a stride-16 feature map into proposals (and, in training, the RPN loss)."""

    def __init__(
        self,
        head: RPNHead,
        *,
        stride: int,
        anchor_scales: tuple[float, ...],
        anchor_ratios: tuple[float, ...],
        train_settings: RPNSettings,
        test_settings: RPNSettings,
    ) -> None:
        super().__init__()
        self.head = head
        self.stride = stride
        self.anchor_scales = anchor_scales
        self.anchor_ratios = anchor_ratios
        self.train_settings = train_settings
        self.test_settings = test_settings
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))

    def anchors(self, features: Tensor) -> Tensor:
        h, w = features.shape[-2:]
        return make_anchors(h, w, self.stride, self.anchor_scales, self.anchor_ratios, features.device)

    def forward(self, features: Tensor, image_size: tuple[int, int]) -> tuple[list[Tensor], Tensor, Tensor, Tensor]:
        """Returns (proposals: list of Tensor[N_i, 4] per image, logits, deltas, anchors)."""
        logits, deltas = self.head(features)
        anchors = self.anchors(features)
        settings = self.train_settings if self.training else self.test_settings
        with torch.no_grad():
            proposals = [
                self.select(logits[i].detach(), deltas[i].detach(), anchors, image_size, settings)
                for i in range(features.shape[0])
            ]
        return proposals, logits, deltas, anchors

    def select(
        self, logits: Tensor, deltas: Tensor, anchors: Tensor, image_size: tuple[int, int], s: RPNSettings
    ) -> Tensor:
        """Top-N by objectness, decode, clip, drop tiny boxes, NMS, top-N again -> Tensor[N, 4]."""
        k = min(s.pre_nms_top_n, logits.shape[0])
        # a stable sort, not topk: equal scores (anchors over letterbox padding) then rank by index, as ONNX TopK
        # does, so an exported graph selects exactly the same candidates
        scores, idx = torch.sort(logits, descending=True, stable=True)
        scores, idx = scores[:k], idx[:k]
        boxes = self.box_coder.decode(deltas[idx], anchors[idx])
        boxes = clip_boxes(boxes, float(image_size[0]), float(image_size[1]))
        wh = boxes[:, 2:] - boxes[:, :2]
        ok = (wh >= s.min_size).all(dim=1)
        boxes, scores = boxes[ok], scores[ok]
        keep = nms(boxes, scores, s.nms_thresh, max_keep=s.post_nms_top_n)
        return boxes[keep]


def sample_labels(labels: Tensor, batch_size: int, positive_fraction: float, generator=None) -> tuple[Tensor, Tensor]:
    """Sample indices of positives (label >= 1) and negatives (label == 0); -1 is ignored."""
    pos = torch.nonzero(labels >= 1).flatten()
    neg = torch.nonzero(labels == 0).flatten()
    num_pos = min(int(batch_size * positive_fraction), pos.numel())
    num_neg = min(batch_size - num_pos, neg.numel())
    pos = pos[torch.randperm(pos.numel(), generator=generator)[:num_pos]]
    neg = neg[torch.randperm(neg.numel(), generator=generator)[:num_neg]]
    return pos, neg


def rpn_loss(
    logits: Tensor,
    deltas: Tensor,
    anchors: Tensor,
    gt_boxes: list[Tensor],
    *,
    fg_iou: float,
    bg_iou: float,
    batch_size: int,
    positive_fraction: float,
) -> dict[str, Tensor]:
    """Objectness BCE and smooth-L1 box loss over sampled anchors (Faster R-CNN's RPN loss)."""
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    cls_losses, box_losses = [], []
    for i, gt in enumerate(gt_boxes):
        labels = torch.zeros(anchors.shape[0], device=anchors.device)
        targets = torch.zeros_like(anchors)
        if gt.numel():
            iou = box_iou(gt, anchors)  # [G, A]
            best, matched = iou.max(dim=0)
            labels.fill_(-1)
            labels[best < bg_iou] = 0
            labels[best >= fg_iou] = 1
            # every gt keeps its best anchor(s), even under fg_iou
            gt_best = iou.max(dim=1, keepdim=True).values
            labels[((iou == gt_best) & (gt_best > 0)).any(dim=0)] = 1
            targets = coder.encode(gt[matched], anchors)
        pos, neg = sample_labels(labels, batch_size, positive_fraction)
        sampled = torch.cat([pos, neg])
        cls_losses.append(F.binary_cross_entropy_with_logits(logits[i, sampled], labels[sampled], reduction="sum"))
        box = F.smooth_l1_loss(deltas[i, pos], targets[pos], beta=1 / 9, reduction="sum")
        box_losses.append(box)
        # normalise by the sampled count, as torchvision does
        cls_losses[-1] = cls_losses[-1] / max(sampled.numel(), 1)
        box_losses[-1] = box_losses[-1] / max(sampled.numel(), 1)
    n = len(gt_boxes)
    return {"loss_rpn_cls": sum(cls_losses) / n, "loss_rpn_box": sum(box_losses) / n}
