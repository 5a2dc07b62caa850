"""Light-Head R-CNN: normalise -> backbone -> RPN -> thin feature map -> PS-RoIAlign -> fc-2048 -> detections."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lighthead_edge.config import LossSettings, ModelConfig
from lighthead_edge.modeling.backbones import build_backbone
from lighthead_edge.modeling.rcnn_head import RCNNHead, RoIHeads, rcnn_loss
from lighthead_edge.modeling.rpn import RegionProposalNetwork, RPNHead, RPNSettings, rpn_loss, sample_labels
from lighthead_edge.modeling.thin_head import LargeSeparableConv
from lighthead_edge.ops.boxes import BoxCoder, box_iou, clip_boxes
from lighthead_edge.ops.nms import batched_nms
from lighthead_edge.ops.ps_roi_align import PSRoIAlign

RCNN_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)

Detections = dict[str, Tensor]  # boxes Tensor[D, 4] (input pixels, xyxy), scores Tensor[D], labels Tensor[D] (1..C)


class LightHeadRCNN(nn.Module):
    """The detector. ``forward(images)`` takes Tensor[B, 3, H, W] RGB in 0..255 at ``config.input_size``.

    In training mode it also takes ``targets`` (a list of dicts with ``boxes`` Tensor[N, 4] xyxy in input pixels and
    ``labels`` Tensor[N] in 1..C) and returns a dict of losses; in eval mode it returns a list of ``Detections``.
    ``losses`` sets how those losses match and sample anchors and RoIs (``use_losses`` changes it for fine-tuning).
    """

    def __init__(self, config: ModelConfig, backbone: nn.Module, losses: LossSettings | None = None) -> None:
        super().__init__()
        self.config = config
        self.losses = losses or LossSettings()
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(1, 3, 1, 1), persistent=False)
        self.backbone = backbone
        c = config
        self.rpn = RegionProposalNetwork(
            RPNHead(backbone.out_channels, c.rpn_channels, c.num_anchors),
            stride=c.stride,
            anchor_scales=c.anchor_scales,
            anchor_ratios=c.anchor_ratios,
            train_settings=RPNSettings(
                c.rpn_pre_nms_top_n_train, c.rpn_post_nms_top_n_train, c.rpn_nms_thresh, c.rpn_min_size
            ),
            test_settings=RPNSettings(
                c.rpn_pre_nms_top_n_test, c.rpn_post_nms_top_n_test, c.rpn_nms_thresh, c.rpn_min_size
            ),
        )
        self.thin_head = LargeSeparableConv(backbone.out_channels, c.head_mid_channels, c.thin_channels, c.kernel_size)
        self.roi_heads = RoIHeads(
            PSRoIAlign(c.pool_size, 1.0 / c.stride, c.sampling_ratio),
            RCNNHead(c.thin_channels, c.fc_dim, c.num_classes, c.class_agnostic_reg),
        )
        self.box_coder = BoxCoder(RCNN_BOX_WEIGHTS)

    def use_losses(self, losses: LossSettings) -> None:
        """Train with these matching and sampling settings from now on (a loaded model starts with the defaults)."""
        self.losses = losses

    def normalize(self, images: Tensor) -> Tensor:
        return (images - self.pixel_mean) / self.pixel_std

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None):
        image_size = (images.shape[-2], images.shape[-1])
        features = self.backbone(self.normalize(images))
        proposals, logits, deltas, anchors = self.rpn(features, image_size)
        thin = self.thin_head(features)
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            return self._losses(thin, proposals, logits, deltas, anchors, targets)
        rois = _to_rois(proposals)
        cls_logits, box_deltas = self.roi_heads(thin, rois)
        return self.postprocess(cls_logits, box_deltas, proposals, image_size)

    def _losses(self, thin, proposals, logits, deltas, anchors, targets) -> dict[str, Tensor]:
        t = self.losses
        gt_boxes = [tgt["boxes"] for tgt in targets]
        losses = rpn_loss(
            logits, deltas, anchors, gt_boxes,
            fg_iou=t.rpn_fg_iou, bg_iou=t.rpn_bg_iou, batch_size=t.rpn_batch_size,
            positive_fraction=t.rpn_positive_fraction,
        )  # fmt: skip
        rois, labels, box_targets = self._sample_rois(proposals, targets)
        cls_logits, box_deltas = self.roi_heads(thin, rois)
        losses.update(rcnn_loss(cls_logits, box_deltas, labels, box_targets, self.config.class_agnostic_reg))
        return losses

    @torch.no_grad()
    def _sample_rois(self, proposals: list[Tensor], targets: list[dict[str, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
        """Match proposals (plus the ground truth itself) to ground truth and sample fg/bg RoIs per image."""
        t = self.losses
        all_rois, all_labels, all_targets = [], [], []
        for i, (props, tgt) in enumerate(zip(proposals, targets)):
            gt, gt_labels = tgt["boxes"], tgt["labels"]
            props = torch.cat([props, gt])
            labels = torch.zeros(props.shape[0], dtype=torch.long, device=props.device)
            matched_boxes = props.clone()
            if gt.numel():
                best, matched = box_iou(gt, props).max(dim=0)
                labels = gt_labels[matched].clone()
                labels[best < t.roi_fg_iou] = 0
                labels[(best < t.roi_bg_iou_lo) | ((best >= t.roi_bg_iou_hi) & (best < t.roi_fg_iou))] = -1
                matched_boxes = gt[matched]
            pos, neg = sample_labels(labels, t.roi_batch_size, t.roi_positive_fraction)
            keep = torch.cat([pos, neg])
            all_rois.append(F.pad(props[keep], (1, 0), value=float(i)))
            all_labels.append(labels[keep])
            all_targets.append(self.box_coder.encode(matched_boxes[keep], props[keep]))
        return torch.cat(all_rois), torch.cat(all_labels), torch.cat(all_targets)

    def postprocess(
        self, cls_logits: Tensor, box_deltas: Tensor, proposals: list[Tensor], image_size: tuple[int, int]
    ) -> list[Detections]:
        """Softmax, box decoding, score threshold, per-class NMS and top-k, per image."""
        c = self.config
        scores = F.softmax(cls_logits, dim=1)
        boxes = self.box_coder.decode(box_deltas, torch.cat(proposals))
        boxes = clip_boxes(boxes.view(boxes.shape[0], -1, 4), float(image_size[0]), float(image_size[1]))
        results = []
        for s, b in zip(scores.split([len(p) for p in proposals]), boxes.split([len(p) for p in proposals])):
            # class-major candidates ([C, R]), so that equal scores rank as in the exported graph's per-class NMS
            s = s[:, 1:].t()
            b = (b.expand(-1, c.num_classes, -1) if c.class_agnostic_reg else b[:, 1:]).transpose(0, 1)
            labels = torch.arange(1, c.num_classes + 1, device=s.device)[:, None].expand_as(s)
            s, b, labels = s.reshape(-1), b.reshape(-1, 4), labels.reshape(-1)
            ok = (s > c.score_thresh) & ((b[:, 2:] - b[:, :2]) > 1e-2).all(dim=1)
            s, b, labels = s[ok], b[ok], labels[ok]
            keep = batched_nms(b, s, labels, c.nms_thresh, max_keep=c.detections_per_img)
            results.append({"boxes": b[keep], "scores": s[keep], "labels": labels[keep]})
        return results


def _to_rois(proposals: list[Tensor]) -> Tensor:
    """List of Tensor[N_i, 4] -> Tensor[sum N_i, 5] with the batch index first."""
    return torch.cat([F.pad(p, (1, 0), value=float(i)) for i, p in enumerate(proposals)])


def build_detector(
    config: ModelConfig, *, pretrained_backbone: str | Path | None = None, losses: LossSettings | None = None
) -> LightHeadRCNN:
    """The one place a detector is built from its settings."""
    backbone = build_backbone(config.backbone, pretrained=pretrained_backbone)
    return LightHeadRCNN(config, backbone, losses)


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm in eval mode with frozen affine parameters: detection batches are too small for BN."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
