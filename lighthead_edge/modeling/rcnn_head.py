"""The R-CNN subnet: PS-RoIAlign on the thin map, one fc-2048, then class scores and box deltas; its loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lighthead_edge.ops.ps_roi_align import PSRoIAlign


class RCNNHead(nn.Module):
    """Tensor[R, alpha, p, p] pooled features -> (class logits Tensor[R, C+1], deltas Tensor[R, 4] or [R, 4(C+1)]).

    The fc input is alpha * p * p: pruning a PS group of the thin map removes p*p fc inputs.
    """

    def __init__(self, in_features: int, fc_dim: int, num_classes: int, class_agnostic_reg: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, fc_dim)
        self.cls_score = nn.Linear(fc_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(fc_dim, 4 if class_agnostic_reg else 4 * (num_classes + 1))
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        for layer in (self.cls_score, self.bbox_pred):
            nn.init.zeros_(layer.bias)

    def forward(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        x = F.relu(self.fc(pooled.flatten(1)))
        return self.cls_score(x), self.bbox_pred(x)


class RoIHeads(nn.Module):
    """PS-RoIAlign + RCNNHead; the pooler is a separate module so the export can swap it by type."""

    def __init__(self, pooler: PSRoIAlign, head: RCNNHead) -> None:
        super().__init__()
        self.pooler = pooler
        self.head = head

    def forward(self, thin: Tensor, rois: Tensor) -> tuple[Tensor, Tensor]:
        """thin (Tensor[B, alpha*p*p, h, w]), rois (Tensor[R, 5]) -> logits, deltas."""
        return self.head(self.pooler(thin, rois))


def rcnn_loss(
    logits: Tensor, deltas: Tensor, labels: Tensor, targets: Tensor, class_agnostic: bool
) -> dict[str, Tensor]:
    """Cross-entropy over sampled RoIs and smooth-L1 on the foreground ones, both over the sampled count."""
    loss_cls = F.cross_entropy(logits, labels)
    fg = torch.nonzero(labels > 0).flatten()
    if class_agnostic:
        pred = deltas[fg]
    else:
        pred = deltas.view(deltas.shape[0], -1, 4)[fg, labels[fg]]
    loss_box = F.smooth_l1_loss(pred, targets[fg], beta=1.0, reduction="sum") / max(labels.numel(), 1)
    return {"loss_rcnn_cls": loss_cls, "loss_rcnn_box": loss_box}
