"""Three R-CNN heads on the same stride-16 features, for weighing Light-Head R-CNN's claim about head cost.

    head = build_head(HeadKind.LIGHT, in_channels=96, num_classes=80)
    cls_logits, box_deltas = head(features, rois)  # Tensor[1, C_in, h, w], Tensor[K, 5] -> [K, C+1], [K, 4]

- :class:`LightHead`: the detector's own head, built as :class:`~lighthead_edge.modeling.detector.LightHeadRCNN`
  builds it: the large separable convolution to the thin map of alpha * p * p channels, PS-RoIAlign, fc-2048, cls
  and box. Its cost is nearly independent of the class count.
- :class:`RFCNHead`: R-FCN's head: a 1x1 conv to (C + 1) * p * p class score maps plus 4 * p * p box maps (class
  agnostic), PS-RoIAlign, then voting (the mean over the p * p bins). No per-RoI layer, but its score maps, and what
  its pooling reads per RoI, grow with the class count.
- :class:`FasterRCNNHead`: Faster R-CNN's head: RoIAlign 7x7 on the raw backbone features, two fc-1024, cls and box.
  Its per-RoI fc on C_in * 7 * 7 inputs grows with the RoI count.

All three regress class-agnostic boxes (4 deltas per RoI), the light head's default, so that only the part the paper
argues about differs. The two PS heads use :class:`~lighthead_edge.ops.ps_roi_align.PSRoIAlign` (``sampling_ratio``
samples per bin and axis, 2 by default), which the export swaps for the exportable ``PSRoIAlignExport`` by type, as
for the detector. RoIAlign is
:class:`RoIAlign`: an ONNX ``RoiAlign`` node when exported (onnxruntime and OpenVINO run it natively), the pure-torch
reference in eager mode.

Weights are random: these modules exist to be timed and exported (``scripts/bench_heads.py``), not trained.
"""

from __future__ import annotations

from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lighthead_edge.config import ModelConfig
from lighthead_edge.modeling.rcnn_head import RCNNHead, RoIHeads
from lighthead_edge.modeling.thin_head import LargeSeparableConv
from lighthead_edge.ops.ps_roi_align import PSRoIAlign, as_pair, ps_roi_align
from lighthead_edge.ops.ps_roi_align_export import PSRoIAlignExport, bin_major_order

FASTER_FC_DIM = 1024


class HeadKind(str, Enum):
    """Which head: ``light`` (Light-Head R-CNN), ``rfcn`` (R-FCN) or ``faster`` (Faster R-CNN, two fc)."""

    LIGHT = "light"
    RFCN = "rfcn"
    FASTER = "faster"


class _RoiAlignOnnx(torch.autograd.Function):
    """ONNX ``RoiAlign`` (average, ``half_pixel``: the -0.5 pixel shift of torchvision's ``aligned=True``): one node
    when exported; in eager mode the reference :func:`~lighthead_edge.ops.ps_roi_align.ps_roi_align` on the map with
    each channel repeated ph * pw times, which is plain RoIAlign (every bin of a channel reads that channel)."""

    @staticmethod
    def forward(ctx, input: Tensor, boxes: Tensor, batch: Tensor, output_size: tuple[int, int], spatial_scale: float,
                sampling_ratio: int) -> Tensor:  # fmt: skip
        ph, pw = output_size
        rois = torch.cat([batch[:, None].to(boxes.dtype), boxes], dim=1)
        return ps_roi_align(input.repeat_interleave(ph * pw, dim=1), rois, output_size, spatial_scale, sampling_ratio)

    @staticmethod
    def symbolic(g, input, boxes, batch, output_size: tuple[int, int], spatial_scale: float, sampling_ratio: int):
        return g.op("RoiAlign", input, boxes, batch, mode_s="avg", coordinate_transformation_mode_s="half_pixel",
                    output_height_i=output_size[0], output_width_i=output_size[1], sampling_ratio_i=sampling_ratio,
                    spatial_scale_f=spatial_scale)  # fmt: skip


def roi_align(
    input: Tensor, rois: Tensor, output_size: int | tuple[int, int], spatial_scale: float = 1.0, sampling_ratio: int = 2
) -> Tensor:
    """RoIAlign with torchvision's ``aligned=True`` semantics (one ONNX ``RoiAlign`` node when exported, opset 16+).

    Args:
        input (Tensor[N, C, H, W]), rois (Tensor[K, 5]: batch index, x1, y1, x2, y2 in image pixels), output_size
        (ph, pw), spatial_scale (1/16 for stride 16), sampling_ratio (> 0: samples per bin along each axis).

    Returns:
        Tensor[K, C, ph, pw].
    """
    if sampling_ratio <= 0:
        raise ValueError("roi_align here takes a fixed sampling_ratio > 0 (adaptive grids differ between engines)")
    return _RoiAlignOnnx.apply(input, rois[:, 1:], rois[:, 0].long(), as_pair(output_size), float(spatial_scale),
                               int(sampling_ratio))  # fmt: skip


class RoIAlign(nn.Module):
    """Module form of :func:`roi_align`."""

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float, sampling_ratio: int) -> None:
        super().__init__()
        self.output_size = as_pair(output_size)
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio

    def forward(self, input: Tensor, rois: Tensor) -> Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio)


class LightHead(nn.Module):
    """The light head of :class:`~lighthead_edge.modeling.detector.LightHeadRCNN`, built from the same config fields
    by the same constructors (``thin_head``, ``roi_heads``: the export's swaps and rewrites apply to it unchanged).

    ``forward(features (Tensor[1, C_in, h, w]), rois (Tensor[K, 5]))`` -> (Tensor[K, C + 1], Tensor[K, 4]).
    """

    def __init__(self, in_channels: int, config: ModelConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.thin_head = LargeSeparableConv(in_channels, c.head_mid_channels, c.thin_channels, c.kernel_size)
        self.roi_heads = RoIHeads(
            PSRoIAlign(c.pool_size, 1.0 / c.stride, c.sampling_ratio),
            RCNNHead(c.thin_channels, c.fc_dim, c.num_classes, c.class_agnostic_reg),
        )

    def forward(self, features: Tensor, rois: Tensor) -> tuple[Tensor, Tensor]:
        return self.roi_heads(self.thin_head(features), rois)


class RFCNHead(nn.Module):
    """R-FCN's head: a 1x1 conv to (C + 1 + 4) * p * p position-sensitive maps (class scores, then class-agnostic
    box deltas), PS-RoIAlign, and voting: each RoI's score is the mean of its p * p bins.

    ``forward(features (Tensor[1, C_in, h, w]), rois (Tensor[K, 5]))`` -> (Tensor[K, C + 1], Tensor[K, 4]).
    """

    def __init__(self, in_channels: int, config: ModelConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.num_outputs = c.num_classes + 1 + 4
        self.score_maps = nn.Conv2d(in_channels, self.num_outputs * c.pool_size**2, 1)
        nn.init.normal_(self.score_maps.weight, std=0.01)
        nn.init.zeros_(self.score_maps.bias)
        self.pooler = PSRoIAlign(c.pool_size, 1.0 / c.stride, c.sampling_ratio)

    def forward(self, features: Tensor, rois: Tensor) -> tuple[Tensor, Tensor]:
        pooled = self.pooler(self.score_maps(features), rois)
        # a bin-major pooler (to_bin_major) gives Tensor[K, p, p, C + 5], the reference Tensor[K, C + 5, p, p]
        votes = pooled.mean(dim=(1, 2)) if getattr(self.pooler, "bin_major", False) else pooled.mean(dim=(2, 3))
        return votes[:, : self.num_outputs - 4], votes[:, self.num_outputs - 4 :]

    def to_bin_major(self) -> bool:
        """Reorder the score maps bin-major, as :func:`~lighthead_edge.export.graph.to_bin_major` does the light
        head's thin map, once the pooler is an exportable uniform one -> whether it did. Exact (voting is a mean)."""
        if not isinstance(self.pooler, PSRoIAlignExport) or not self.pooler.uniform:
            return False
        order = bin_major_order(self.score_maps.out_channels, self.config.pool_size**2)
        with torch.no_grad():
            self.score_maps.weight.copy_(self.score_maps.weight[order])
            self.score_maps.bias.copy_(self.score_maps.bias[order])
        self.pooler.bin_major = True
        return True


class FasterRCNNHead(nn.Module):
    """Faster R-CNN's two-fc head: RoIAlign p x p on the raw backbone features, fc-1024, fc-1024, cls and box.

    ``forward(features (Tensor[1, C_in, h, w]), rois (Tensor[K, 5]))`` -> (Tensor[K, C + 1], Tensor[K, 4]).
    """

    def __init__(self, in_channels: int, config: ModelConfig, fc_dim: int = FASTER_FC_DIM) -> None:
        super().__init__()
        c = config
        self.config = c
        self.pooler = RoIAlign(c.pool_size, 1.0 / c.stride, c.sampling_ratio)
        self.fc6 = nn.Linear(in_channels * c.pool_size**2, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        self.cls_score = nn.Linear(fc_dim, c.num_classes + 1)
        self.bbox_pred = nn.Linear(fc_dim, 4)

    def forward(self, features: Tensor, rois: Tensor) -> tuple[Tensor, Tensor]:
        x = F.relu(self.fc6(self.pooler(features, rois).flatten(1)))
        x = F.relu(self.fc7(x))
        return self.cls_score(x), self.bbox_pred(x)


_HEADS: dict[HeadKind, type[nn.Module]] = {HeadKind.LIGHT: LightHead, HeadKind.RFCN: RFCNHead,
                                           HeadKind.FASTER: FasterRCNNHead}  # fmt: skip


def build_head(
    kind: HeadKind | str, *, in_channels: int, num_classes: int, head_size: str = "S", sampling_ratio: int = 2
) -> nn.Module:
    """One head in eval mode, with the detector's defaults (p = 7, stride 16, alpha = 10, k = 15, fc-2048,
    class-agnostic boxes); ``head_size`` sets the light head's C_mid (S: 64, L: 256), ``sampling_ratio`` the samples
    per bin along each axis of the (PS-)RoIAlign (2, the paper's 2 x 2; 1 reads one bilinear sample per bin, near
    R-FCN's original PS-RoI average pooling where a bin is less than a feature pixel)."""
    config = ModelConfig(num_classes=num_classes, head_size=head_size, sampling_ratio=sampling_ratio)
    return _HEADS[HeadKind(kind)](in_channels, config).eval()
