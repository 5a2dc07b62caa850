"""Distillation from the unpruned model while a pruned one fine-tunes: an ``extra_loss`` for ``train()``.

What is matched, and why:

- The R-CNN outputs on the SAME RoIs for teacher and student. Thin maps can't be compared channel by channel (the
  student lost PS groups and mids), but class logits and box deltas per RoI mean the same thing in both.
- The RoIs are the teacher's top RPN proposals plus the ground-truth boxes of each image, so the student learns the
  teacher's answer on the boxes that reach the head at test time, not only on the sampled training RoIs.
- Classes: KL(teacher || student) on softmax(logits / T), times T^2 (Hinton et al. 2015) so its gradient scale does
  not depend on T. Boxes: smooth-L1 between the deltas, weighted by the teacher's foreground probability, because
  the deltas of a RoI the teacher calls background were never trained and carry no knowledge.

The student's thin map is taken from its own training forward through a forward hook on ``thin_head``, so the
backbone and thin head run once per iteration for the student; only the teacher (in eval mode, no grad) runs again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lighthead_edge.modeling.detector import LightHeadRCNN


@dataclass(frozen=True)
class DistillConfig:
    """Weights and RoIs of the distillation loss."""

    temperature: float = 2.0
    cls_weight: float = 1.0
    box_weight: float = 1.0
    rois_per_image: int = 64  # teacher proposals per image (plus the image's ground truth)


@torch.no_grad()
def teacher_rois(
    teacher: LightHeadRCNN, features: Tensor, images: Tensor, targets: list[dict[str, Tensor]], per_image: int
) -> Tensor:
    """Tensor[R, 5]: (batch index, box) of ``teacher``'s top ``per_image`` test-time proposals plus each image's
    ground-truth boxes; ``features`` is the teacher's backbone output for ``images``."""
    proposals = teacher.rpn(features, (images.shape[-2], images.shape[-1]))[0]
    rois = [F.pad(torch.cat([props[:per_image], tgt["boxes"].to(props)]), (1, 0), value=float(i))
            for i, (props, tgt) in enumerate(zip(proposals, targets))]  # fmt: skip
    return torch.cat(rois)


class RoIDistiller:
    """``extra_loss(model, images, targets) -> {"loss_distill_cls", "loss_distill_box"}`` for ``train()``.

    Hooks ``student.thin_head`` on construction; call ``close()`` when training ends to remove the hook.
    """

    def __init__(self, teacher: LightHeadRCNN, student: LightHeadRCNN, config: DistillConfig | None = None) -> None:
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.config = config or DistillConfig()
        self._thin: Tensor | None = None

        def keep_thin(module, inputs, output: Tensor) -> None:
            self._thin = output if module.training else None  # only training forwards feed the loss

        self._hook = student.thin_head.register_forward_hook(keep_thin)

    def close(self) -> None:
        self._hook.remove()
        self._thin = None

    @torch.no_grad()
    def _teacher_rois(self, images: Tensor, targets: list[dict[str, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
        """-> rois Tensor[R, 5], teacher logits Tensor[R, C+1], teacher deltas Tensor[R, 4 or 4(C+1)]."""
        t = self.teacher
        features = t.backbone(t.normalize(images))
        rois = teacher_rois(t, features, images, targets, self.config.rois_per_image)
        logits, deltas = t.roi_heads(t.thin_head(features), rois)
        return rois, logits, deltas

    def __call__(self, model: LightHeadRCNN, images: Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        if self._thin is None:  # called outside train()'s loop (no training forward just ran): compute it
            self._thin = model.thin_head(model.backbone(model.normalize(images)))
        rois, t_logits, t_deltas = self._teacher_rois(images, targets)
        s_logits, s_deltas = model.roi_heads(self._thin, rois)
        self._thin = None
        c = self.config
        temp = c.temperature
        kl = F.kl_div(F.log_softmax(s_logits / temp, dim=1), F.log_softmax(t_logits / temp, dim=1),
                      reduction="batchmean", log_target=True) * temp**2  # fmt: skip
        fg = 1.0 - F.softmax(t_logits, dim=1)[:, 0]
        box = (F.smooth_l1_loss(s_deltas, t_deltas, reduction="none").mean(dim=1) * fg).sum() / fg.sum().clamp(min=1.0)
        return {"loss_distill_cls": c.cls_weight * kl, "loss_distill_box": c.box_weight * box}
