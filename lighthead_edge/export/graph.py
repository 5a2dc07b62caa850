"""The end-to-end export graph: a letterboxed uint8 image in, a fixed-size list of detections out.

:class:`EndToEndDetector` is built from a trained :class:`~lighthead_edge.modeling.detector.LightHeadRCNN` on a copy
(its :class:`PSRoIAlign` swapped for :class:`PSRoIAlignExport` by module type) and computes the same detections as
the eager model, with every step in the graph:

``images`` uint8 [1, H, W, 3] BGR (or a camera frame of any fixed size, letterboxed in the graph by
:class:`FrameLetterbox`: ``export --frame-size``) -> cast, NHWC->NCHW, BGR->RGB and ``(x - mean) / std`` ->
backbone -> RPN head -> top-k, anchor decoding, clipping, min-size filter, proposal NMS -> ``post_nms_top_n`` RoI
slots -> thin map -> PS-RoIAlign -> fc-2048 -> softmax, box decoding, clipping, per-class NMS ->
top ``detections_per_img``.

Two exact rewrites of the copy make the graph cheaper than a literal transcription, in FP32 and more so in INT8:
the channel swap and normalisation are folded into the backbone's first conv (:func:`fold_normalization`; for
OpenVINO only the channel swap is, :func:`fold_channel_swap`), and the thin map's channels are reordered bin-major so
PS-RoIAlign needs no Transpose of it (:func:`to_bin_major`).

Outputs, all with static shapes (D = ``detections_per_img``):

- ``boxes`` float32 [1, D, 4]: xyxy in input (letterboxed) pixels, or in frame pixels for a frame-in graph;
- ``scores`` float32 [1, D]: by decreasing score;
- ``labels`` int64 [1, D]: 1..C, ``class_names[label - 1]``;
- ``num_detections`` int64 [1]: the first ``num_detections`` rows are detections, the rest are zeros (label 0).

Both NMS steps are ONNX ``NonMaxSuppression`` nodes (:class:`NonMaxSuppression`), which stock onnxruntime and
OpenVINO implement. Only NMS outputs have a data-dependent length; each is turned back into a static shape at once
(a scatter into a keep-mask over all candidates, then a top-k), so everything else has static shapes.

The float-only arithmetic (proposal decoding and NMS, RoI coordinates inside PS-RoIAlign, box decoding, softmax and
the final NMS) runs in submodules whose names prefix the exported nodes' names: :data:`FLOAT_NODE_PATTERN` matches
them in ONNX and in OpenVINO (which keeps ONNX node names), and :func:`float_node_names` lists them, for the INT8
step's ignored scope.

Note:
    Parity with the eager model holds up to ties and exact threshold equalities: OpenVINO's NMS suppresses a box at
    IoU == threshold where torch and onnxruntime keep it (IoU > threshold suppresses), and tied scores may be ordered
    differently. Neither happens on real images except by a float coincidence.
"""

from __future__ import annotations

import dataclasses
import re
from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lighthead_edge.data.transforms import PAD_BGR, letterbox_geometry
from lighthead_edge.export.swap import swap_modules
from lighthead_edge.modeling.detector import RCNN_BOX_WEIGHTS, LightHeadRCNN
from lighthead_edge.modeling.rpn import RPNSettings, make_anchors
from lighthead_edge.modeling.summary import conv_calls
from lighthead_edge.ops.boxes import BoxCoder, clip_boxes
from lighthead_edge.ops.nms import nms
from lighthead_edge.ops.ps_roi_align import PSRoIAlign
from lighthead_edge.ops.ps_roi_align_export import (
    COORDS_SCOPE,
    WEIGHTED_SUM_SCOPE,
    PSRoIAlignExport,
    PSRoIAlignMethod,
    bin_major_order,
    max_adaptive_grid,
)

if TYPE_CHECKING:
    import onnx

INPUT_NAME = "images"
OUTPUT_NAMES = ("boxes", "scores", "labels", "num_detections")
# submodule names of the float-only parts; the legacy exporter prefixes their nodes' names with them
PREPROCESS_SCOPE = "preprocess"
LETTERBOX_SCOPE = "frame_letterbox"
PROPOSALS_SCOPE = "rpn_proposals"
POSTPROCESS_SCOPE = "detection_postprocess"
FLOAT_SCOPES = (LETTERBOX_SCOPE, PROPOSALS_SCOPE, POSTPROCESS_SCOPE, COORDS_SCOPE, WEIGHTED_SUM_SCOPE)
# regex over ONNX / OpenVINO node names (an nncf.IgnoredScope pattern) matching every float-only node
FLOAT_NODE_PATTERN = rf"(.*/)?({'|'.join(FLOAT_SCOPES)})/.*"


class NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (corner boxes): our pure-torch NMS in eager mode, one ONNX node when exported.

    ``apply(boxes (Tensor[B, N, 4]), scores (Tensor[B, C, N]), max_output: int, iou_threshold: float,
    score_threshold: float | None) -> Tensor[S, 3]`` int64 rows ``(batch, class, box index)``, grouped by batch then
    class, each group by decreasing score. A box is dropped if its score is not above ``score_threshold`` (none
    when it is None) or if it overlaps a kept box of its (batch, class) by IoU > ``iou_threshold``; at most
    ``max_output`` are kept per (batch, class). onnxruntime and OpenVINO agree on all of this (checked), except
    that OpenVINO also suppresses at IoU == threshold.
    """

    @staticmethod
    def forward(
        ctx, boxes: Tensor, scores: Tensor, max_output: int, iou_threshold: float, score_threshold: float | None
    ) -> Tensor:
        # while exporting, this body only computes the example's values: the trace records one node for it
        # (``symbolic``), so its ops are kept out of the trace. Traced, they were recorded as the node's subgraph,
        # which the exporter's peephole pass then fails on ("Argument passed to at() was not in the map") once NMS
        # resolves its boxes block by block; the tracer's warnings about Python control flow don't apply either.
        tracing = torch._C._get_tracing_state()
        torch._C._set_tracing_state(None)
        try:
            return _nms_rows(boxes, scores, max_output, iou_threshold, score_threshold)
        finally:
            torch._C._set_tracing_state(tracing)

    @staticmethod
    def symbolic(
        g, boxes: torch.Value, scores: torch.Value, max_output: int, iou_threshold: float, score_threshold: float | None
    ) -> torch.Value:
        inputs = [
            boxes,
            scores,
            g.op("Constant", value_t=torch.tensor([max_output], dtype=torch.int64)),
            g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32)),
        ]
        if score_threshold is not None:
            inputs.append(g.op("Constant", value_t=torch.tensor([score_threshold], dtype=torch.float32)))
        return g.op("NonMaxSuppression", *inputs, center_point_box_i=0)


def _nms_rows(
    boxes: Tensor, scores: Tensor, max_output: int, iou_threshold: float, score_threshold: float | None
) -> Tensor:
    """The eager body of :class:`NonMaxSuppression`, with its contract."""
    rows = []
    index = torch.arange(boxes.shape[1], device=boxes.device)
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            s = scores[b, c]
            ok = s > score_threshold if score_threshold is not None else torch.ones_like(s, dtype=torch.bool)
            kept = index[ok][nms(boxes[b][ok], s[ok], iou_threshold, max_keep=max_output)]
            rows.append(torch.stack([torch.full_like(kept, b), torch.full_like(kept, c), kept], dim=1))
    return torch.cat(rows) if rows else torch.zeros((0, 3), dtype=torch.int64, device=boxes.device)


def _keep_mask(selected: Tensor, size: int) -> Tensor:
    """Indices (Tensor[S] int64, S data-dependent) -> Tensor[size] float, 1 at those indices: back to a static shape."""
    return torch.zeros(size, dtype=torch.float32, device=selected.device).scatter(
        0, selected, torch.ones_like(selected, dtype=torch.float32)
    )


class Preprocess(nn.Module):
    """``images`` uint8 [1, H, W, 3] BGR -> Tensor[1, 3, H, W] float, RGB, normalised as the eager model does.

    The literal form, used for OpenVINO (whose INT8 pipeline quantizes the first conv's input right after the Div)
    and for a backbone that does not start with a plain conv; onnxruntime gets :class:`FoldedPreprocess`.

    ``swapped_in_conv``: the BGR -> RGB swap was moved into the first conv's weights (:func:`fold_channel_swap`), so
    the image stays BGR and is normalised with the BGR-ordered mean and std; else the channels are flipped here: a
    Slice of step -1, which OpenVINO runs with its reference kernel and which keeps the input Transpose, the
    normalisation and the INT8 quantizer from fusing into one u8 kernel (the INT8 graph's preprocessing took 2.3 ms
    against 0.9 at 512x512 on 2 AVX-512 cores, 4.9 against 1.2 capped at AVX2).
    """

    def __init__(self, pixel_mean: tuple[float, ...], pixel_std: tuple[float, ...], *,
                 swapped_in_conv: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.swapped_in_conv = swapped_in_conv
        if swapped_in_conv:  # the image stays BGR: normalise it in BGR order
            pixel_mean, pixel_std = pixel_mean[::-1], pixel_std[::-1]
        self.register_buffer("mean", torch.tensor(pixel_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(pixel_std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        return self.planar(images.to(torch.float32).permute(0, 3, 1, 2))

    def planar(self, bgr: Tensor) -> Tensor:
        """Tensor[1, 3, H, W] float BGR 0..255 (a :class:`FrameLetterbox`'s output) -> the backbone's input (BGR
        when the swap is in the first conv)."""
        return ((bgr if self.swapped_in_conv else bgr.flip(1)) - self.mean) / self.std


class FoldedPreprocess(nn.Module):
    """``images`` uint8 [1, H, W, 3] BGR -> Tensor[1, 3, H + 2 ph, W + 2 pw] float, raw BGR values, bordered with the
    pixel mean: the input of a first conv into which :func:`fold_normalization` moved the normalisation.

    Why: as Sub / Div / a channel-flip Slice, onnxruntime's INT8 graph ran the normalisation in NHWC (its layout pass
    moves the input Transpose up through them), as broadcasts over a trailing dimension of 3: 2.4 of 17.7 ms
    (1 thread, mobilenet_v2-S 320). Folded, nothing is left but a Cast and a Transpose; the conv's raw 0..255 input
    quantizes exactly (scale 1), and the border of mean values is exactly the eager model's zero padding of the
    normalised image (a zero-padded conv of raw values would be wrong on its border).

    Not for OpenVINO: NNCF moves the input FakeQuantize above the Concat, whose constant inputs then keep OpenVINO's
    low-precision pass from running the first conv in u8 (it ran f32); with :class:`Preprocess` it runs u8.
    """

    def __init__(self, pixel_mean: tuple[float, ...], size: tuple[int, int], padding: tuple[int, int]) -> None:
        super().__init__()
        (h, w), (ph, pw) = size, padding
        bgr_mean = torch.tensor(pixel_mean[::-1], dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("rows", bgr_mean.expand(1, 3, ph, w).contiguous())
        self.register_buffer("cols", bgr_mean.expand(1, 3, h + 2 * ph, pw).contiguous())

    def forward(self, images: Tensor) -> Tensor:
        return self.planar(images.to(torch.float32).permute(0, 3, 1, 2))

    def planar(self, x: Tensor) -> Tensor:
        """Tensor[1, 3, H, W] float BGR 0..255 (a :class:`FrameLetterbox`'s output) -> the folded conv's input."""
        if self.rows.shape[2]:
            x = torch.cat([self.rows, x, self.rows], dim=2)
        if self.cols.shape[3]:
            x = torch.cat([self.cols, x, self.cols], dim=3)
        return x


class SeparableResize(nn.Module):
    """Bilinear resize (half-pixel centres, no antialiasing: ``cv2.resize`` INTER_LINEAR) of a float NCHW tensor
    from ``(h, w)`` to ``(out_h, out_w)``, written as what it is, two passes of two gathers and a weighted sum: along
    the width first, then the height (cv2's order). Exported as ``Gather``, ``Mul`` and ``Add`` nodes with constant
    indices and weights, which every engine runs at memory speed.

    Per axis, output ``d`` samples ``s = (d + 0.5) * in / out - 0.5`` (clamped at 0), from ``floor(s)`` and the next
    index with weights ``1 - f`` and ``f``, ``f = s - floor(s)`` (0 from the last index on). Whenever ``in / out`` is a
    dyadic fraction (640x480 -> 512x384, 1280x720 -> 512x288 and most camera sizes into a 2^k input), the weights
    are exact in float32 and so is every sum of 0..255 values times them: the result is cv2's to the last bit.
    """

    def __init__(self, size: tuple[int, int], out_size: tuple[int, int]) -> None:
        super().__init__()
        for axis, (n_in, n_out) in (("h", (size[0], out_size[0])), ("w", (size[1], out_size[1]))):
            src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0.0)
            first = src.floor()
            frac = torch.where(first >= n_in - 1, 0.0, src - first).to(torch.float32)  # past the edge: the edge
            first = first.to(torch.int64).clamp(max=n_in - 1)
            shape = (1, 1, n_out, 1) if axis == "h" else (1, 1, 1, n_out)
            self.register_buffer(f"{axis}0", first)
            self.register_buffer(f"{axis}1", (first + 1).clamp(max=n_in - 1))
            self.register_buffer(f"{axis}_w0", (1.0 - frac).view(shape))
            self.register_buffer(f"{axis}_w1", frac.view(shape))

    def forward(self, x: Tensor) -> Tensor:
        x = x.index_select(3, self.w0) * self.w_w0 + x.index_select(3, self.w1) * self.w_w1
        return x.index_select(2, self.h0) * self.h_w0 + x.index_select(2, self.h1) * self.h_w1


class ResizeLinear(torch.autograd.Function):
    """ONNX ``Resize`` (linear, half-pixel centres, no antialiasing: ``cv2.resize`` INTER_LINEAR) of any layout to
    the static ``sizes``: one node when exported, so the resize can run on the frame's own layout and type (see
    :class:`FrameLetterbox`); eager: torch's bilinear in NCHW, rounded back to uint8 for a uint8 input.

    ``apply(x (Tensor[1, h, w, C] or [1, C, h, w], float or uint8), sizes (tuple[int, ...]), nhwc: bool)``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, sizes: tuple[int, ...], nhwc: bool) -> Tensor:
        planar = x.permute(0, 3, 1, 2) if nhwc else x
        out_hw = tuple(sizes[1:3]) if nhwc else tuple(sizes[2:4])
        y = F.interpolate(planar.to(torch.float32), size=out_hw, mode="bilinear", align_corners=False)
        y = y.round().clamp(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else y
        return y.permute(0, 2, 3, 1).contiguous() if nhwc else y

    @staticmethod
    def symbolic(g, x: torch.Value, sizes: tuple[int, ...], nhwc: bool) -> torch.Value:
        empty = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
        target = g.op("Constant", value_t=torch.tensor(list(sizes), dtype=torch.int64))
        return g.op("Resize", x, empty, empty, target, mode_s="linear", coordinate_transformation_mode_s="half_pixel",
                    nearest_mode_s="floor")  # fmt: skip


class FrameLetterbox(nn.Module):
    """The runtime's letterbox inside the graph, for a camera of a fixed frame size (``export --frame-size``).

    ``forward(frames uint8 [1, h, w, 3] BGR) -> Tensor[1, 3, H, W]`` float BGR: bilinearly resized (half-pixel
    centres, no antialiasing: ``cv2.resize`` INTER_LINEAR) to the size
    :func:`~lighthead_edge.data.transforms.letterbox_geometry` gives, rounded to whole values as the host's uint8
    resize is, at the top-left, padded bottom and right with the bundle's pad colour. ``to_frame(boxes)`` maps boxes
    from the model input back to frame pixels, clipped to the frame. Every size and the scale are constants of the
    graph. Float-only: the INT8 step leaves it alone (its scope is in :data:`FLOAT_SCOPES`).

    The resize takes the form each engine ran fastest: ``nhwc=True`` (onnxruntime) casts to float and resizes NHWC
    with one ``Resize`` node (:class:`ResizeLinear`; 5.9 ms at 1280x720 -> 512x288, 1 thread, against 19.4 ms for
    float NCHW; its uint8 resize truncates instead of rounding). ``nhwc=False`` (OpenVINO) transposes the uint8 frame,
    casts it and resizes NCHW by gathers and weights (:class:`SeparableResize`): OpenVINO's ``Interpolate`` took
    4.1 ms on a 640x480 frame (2 threads, uint8 NCHW, the fastest of its forms) and left the frame-in INT8 graph at
    0.67x the host graph's throughput; with the gathers it runs at 0.96x, the letterbox included (see
    :func:`~lighthead_edge.export.frame_in.wrap_ir`). cv2.resize on the host took 1.0-1.3 ms.
    """

    def __init__(
        self, frame_size: tuple[int, int], input_size: tuple[int, int], pad_bgr: tuple[int, int, int], *,
        nhwc: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.nhwc = nhwc
        self.frame_size, self.input_size = tuple(frame_size), tuple(input_size)
        self.scale, self.resized = letterbox_geometry(self.frame_size, self.input_size)
        (h, w), (nh, nw) = self.input_size, self.resized
        resizes = not nhwc and self.resized != self.frame_size
        self.resize = SeparableResize(self.frame_size, self.resized) if resizes else None
        pad = torch.tensor(pad_bgr, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("pad_rows", pad.expand(1, 3, h - nh, nw).contiguous())
        self.register_buffer("pad_cols", pad.expand(1, 3, h, w - nw).contiguous())
        fh, fw = self.frame_size
        self.register_buffer("frame_max", torch.tensor([fw, fh, fw, fh], dtype=torch.float32))

    def forward(self, frames: Tensor) -> Tensor:
        nh, nw = self.resized
        if self.resized == self.frame_size:
            x = frames.to(torch.float32).permute(0, 3, 1, 2)
        elif self.nhwc:
            x = ResizeLinear.apply(frames.to(torch.float32), (1, nh, nw, 3), True).round().permute(0, 3, 1, 2)
        else:
            x = self.resize(frames.permute(0, 3, 1, 2).to(torch.float32)).round()
        if self.pad_rows.shape[2]:
            x = torch.cat([x, self.pad_rows], dim=2)
        if self.pad_cols.shape[3]:
            x = torch.cat([x, self.pad_cols], dim=3)
        return x

    def to_frame(self, boxes: Tensor) -> Tensor:
        """Tensor[1, D, 4] xyxy in model-input pixels -> frame pixels, clipped to the frame (zero rows stay zero)."""
        return torch.minimum((boxes / self.scale).clamp(min=0.0), self.frame_max)


def first_conv(backbone: nn.Module, example: Tensor) -> tuple[nn.Module, str, nn.Conv2d] | None:
    """(parent, attribute, conv) of the conv that the backbone applies to its input first, if it takes the input
    itself (not a function of it) and is a plain zero-padded conv of 3 channels; else None."""
    calls = conv_calls(backbone, example)
    if not calls or calls[0][1] is not example:
        return None
    conv = calls[0][0]
    if (conv.in_channels != 3 or conv.groups != 1 or conv.padding_mode != "zeros"
            or not isinstance(conv.padding, tuple)):  # fmt: skip
        return None
    name = next(n for n, m in backbone.named_modules() if m is conv)
    parent_name, _, attr = name.rpartition(".")
    return backbone.get_submodule(parent_name), attr, conv


def fold_normalization(model: LightHeadRCNN) -> FoldedPreprocess | None:
    """Move BGR -> RGB and ``(x - mean) / std`` into the backbone's first conv of ``model`` (a copy: modified in
    place), which then takes raw BGR values with a border of the mean instead of zero padding -> the matching
    :class:`FoldedPreprocess`, or None (model unchanged) when the backbone does not start with such a conv.

    With n_c = (x_{2-c} - m_c) / s_c: W'[:, j] = W[:, 2-j] / s_{2-j}, b' = b - sum W * m / s.
    """
    c = model.config
    found = first_conv(model.backbone, torch.zeros(1, 3, *c.input_size))
    if found is None:
        return None
    parent, attr, conv = found
    mean = torch.tensor(c.pixel_mean, dtype=torch.float32)
    std = torch.tensor(c.pixel_std, dtype=torch.float32)
    weight = conv.weight.detach()
    folded = nn.Conv2d(3, conv.out_channels, conv.kernel_size, conv.stride, 0, conv.dilation, 1, True,
                       device=weight.device, dtype=weight.dtype)  # fmt: skip
    with torch.no_grad():
        folded.weight.copy_((weight / std.view(1, 3, 1, 1)).flip(1))
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        folded.bias.copy_(bias - (weight * (mean / std).view(1, 3, 1, 1)).sum(dim=(1, 2, 3)))
    setattr(parent, attr, folded)
    return FoldedPreprocess(c.pixel_mean, c.input_size, conv.padding)


def fold_channel_swap(model: LightHeadRCNN) -> Preprocess:
    """Move BGR -> RGB into the backbone's first conv of ``model`` (a copy: modified in place; its input channels
    reversed) -> the matching :class:`Preprocess`, which then normalises the BGR image as it is; the literal
    :class:`Preprocess` (model unchanged) when the backbone does not start with a plain 3-channel conv.

    Only the channel order moves: the normalisation stays before the conv, where NNCF puts the conv's input quantizer
    (OpenVINO runs that conv in u8; see :class:`FoldedPreprocess` for why the whole fold does not suit OpenVINO).
    """
    c = model.config
    found = first_conv(model.backbone, torch.zeros(1, 3, *c.input_size))
    if found is None:
        return Preprocess(c.pixel_mean, c.pixel_std)
    conv = found[2]
    with torch.no_grad():
        conv.weight.copy_(conv.weight.flip(1))
    return Preprocess(c.pixel_mean, c.pixel_std, swapped_in_conv=True)


class ProposalSelector(nn.Module):
    """The RPN's test-time selection with a fixed number of RoI slots.

    ``forward(logits (Tensor[1, A]), deltas (Tensor[1, A, 4])) -> (rois (Tensor[P, 5]), valid (Tensor[P] bool))``,
    P = ``min(post_nms_top_n, pre_nms_top_n, A)``. The valid rows are the eager model's proposals, in its order; the
    invalid rows are other (finite, clipped) candidate boxes, whose detections :class:`DetectionPostprocess` drops.
    """

    def __init__(self, anchors: Tensor, image_size: tuple[int, int], settings: RPNSettings) -> None:
        super().__init__()
        self.register_buffer("anchors", anchors)
        self.image_size = image_size
        self.settings = settings
        self.pre = min(settings.pre_nms_top_n, anchors.shape[0])
        self.post = min(settings.post_nms_top_n, self.pre)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))

    def forward(self, logits: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]:
        scores, idx = logits[0].topk(self.pre)  # sorted: candidate order is score order from here on
        boxes = self.box_coder.decode(deltas[0][idx], self.anchors[idx])
        boxes = clip_boxes(boxes, float(self.image_size[0]), float(self.image_size[1]))
        ok = ((boxes[:, 2:] - boxes[:, :2]) >= self.settings.min_size).all(dim=1)
        # instead of removing small boxes (a dynamic shape), score them below every other candidate: NMS then reaches
        # them last, so they neither suppress a kept box nor take its slot, and the keep-mask drops them
        nms_scores = torch.where(ok, scores, scores.min() - 1.0)
        nms_thresh = self.settings.nms_thresh
        selected = NonMaxSuppression.apply(boxes[None], nms_scores[None, None], self.post, nms_thresh, None)
        kept = _keep_mask(selected[:, 2], self.pre) * ok.to(torch.float32)
        # kept candidates first, in candidate (= score) order, then the others: a static [P] selection
        order = kept * torch.arange(self.pre, 0, -1, dtype=torch.float32, device=kept.device)
        slot = order.topk(self.post).indices
        rois = torch.cat([torch.zeros_like(boxes[slot][:, :1]), boxes[slot]], dim=1)
        return rois, kept[slot] > 0


class DetectionPostprocess(nn.Module):
    """Softmax, box decoding, clipping, score threshold, per-class NMS and the top D, with static output shapes.

    ``forward(cls_logits (Tensor[P, C+1]), box_deltas (Tensor[P, 4] or [P, 4(C+1)]), rois (Tensor[P, 5]),
    valid (Tensor[P] bool))`` -> ``boxes [1, D, 4], scores [1, D], labels [1, D] int64, num_detections [1] int64``.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        num_rois: int,
        class_agnostic: bool,
        image_size: tuple[int, int],
        score_thresh: float,
        nms_thresh: float,
        detections_per_img: int,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_rois = num_rois
        self.class_agnostic = class_agnostic
        self.image_size = image_size
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.max_detections = detections_per_img
        self.box_coder = BoxCoder(RCNN_BOX_WEIGHTS)

    def candidates(self, cls_logits: Tensor, box_deltas: Tensor, rois: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """-> per-class boxes (Tensor[C, P, 4]) and scores (Tensor[C, P]), -1 where the eager model drops one."""
        p, c = self.num_rois, self.num_classes
        scores = F.softmax(cls_logits, dim=1)[:, 1:]
        boxes = self.box_coder.decode(box_deltas, rois[:, 1:])
        boxes = clip_boxes(boxes.view(p, -1, 4), float(self.image_size[0]), float(self.image_size[1]))
        boxes = boxes.expand(-1, c, -1) if self.class_agnostic else boxes[:, 1:]
        ok = (scores > self.score_thresh) & ((boxes[..., 2:] - boxes[..., :2]) > 1e-2).all(dim=2) & valid[:, None]
        return boxes.transpose(0, 1).contiguous(), torch.where(ok, scores, -1.0).transpose(0, 1)

    def forward(
        self, cls_logits: Tensor, box_deltas: Tensor, rois: Tensor, valid: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        p, c, d = self.num_rois, self.num_classes, self.max_detections
        boxes, scores = self.candidates(cls_logits, box_deltas, rois, valid)
        # classes as NMS batches, so boxes may differ per class (class-specific regression); the score threshold 0
        # only skips the -1 candidates, which are exactly those the eager model drops
        selected = NonMaxSuppression.apply(boxes, scores[:, None], d, self.nms_thresh, 0.0)
        kept = _keep_mask(selected[:, 0] * p + selected[:, 2], c * p)
        top_scores, top = torch.where(kept > 0, scores.reshape(-1), -1.0).topk(min(d, c * p))
        found = kept[top] > 0
        det_boxes = boxes.reshape(-1, 4)[top] * found[:, None]
        labels = (torch.div(top, p, rounding_mode="floor") + 1) * found
        outputs = [det_boxes, top_scores * found, labels.to(torch.int64)]
        if d > c * p:  # fewer candidates than output rows: pad statically
            outputs = [F.pad(t, (0, 0, 0, d - c * p) if t.dim() == 2 else (0, d - c * p)) for t in outputs]
        return (*(t[None] for t in outputs), found.sum().to(torch.int64).reshape(1))


class EndToEndDetector(nn.Module):
    """uint8 image in, fixed-size detections out; see the module docstring. Build it with :func:`build_export_model`."""

    def __init__(
        self, model: LightHeadRCNN, method: PSRoIAlignMethod, fold_stem: bool = False,
        frame_size: tuple[int, int] | None = None,
    ) -> None:  # fmt: skip
        """``fold_stem``: move the normalisation into the backbone's first conv (:func:`fold_normalization`); else
        only the channel swap (:func:`fold_channel_swap`). Either modifies ``model``: pass a copy. ``frame_size``
        (h, w): take frames of that size and letterbox them in the graph (:class:`FrameLetterbox`), boxes out in frame
        pixels; None: take letterboxed images of the input size."""
        super().__init__()
        c = model.config
        self.config = c
        self.method = method
        self.input_shape = (1, *(frame_size or c.input_size), 3)
        if frame_size is not None:
            self.add_module(LETTERBOX_SCOPE, FrameLetterbox(frame_size, c.input_size, PAD_BGR, nhwc=fold_stem))
        preprocess = fold_normalization(model) if fold_stem else None
        self.add_module(PREPROCESS_SCOPE, preprocess or fold_channel_swap(model))
        self.backbone = model.backbone
        self.rpn_head = model.rpn.head
        feat_h, feat_w = c.input_size[0] // c.stride, c.input_size[1] // c.stride
        anchors = make_anchors(feat_h, feat_w, c.stride, c.anchor_scales, c.anchor_ratios)
        self.add_module(PROPOSALS_SCOPE, ProposalSelector(anchors, c.input_size, model.rpn.test_settings))
        self.thin_head = model.thin_head
        self.roi_heads = model.roi_heads
        post = DetectionPostprocess(
            num_classes=c.num_classes, num_rois=self.num_rois, class_agnostic=c.class_agnostic_reg,
            image_size=c.input_size, score_thresh=c.score_thresh, nms_thresh=c.nms_thresh,
            detections_per_img=c.detections_per_img,
        )  # fmt: skip
        self.add_module(POSTPROCESS_SCOPE, post)

    @property
    def num_rois(self) -> int:
        """The fixed number of RoI slots (P)."""
        return getattr(self, PROPOSALS_SCOPE).post

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """images (Tensor[1, H, W, 3] uint8 BGR: letterboxed, or frames of ``frame_size``) -> boxes, scores, labels,
        num_detections."""
        preprocess, letterbox = getattr(self, PREPROCESS_SCOPE), getattr(self, LETTERBOX_SCOPE, None)
        features = self.backbone(preprocess(images) if letterbox is None else preprocess.planar(letterbox(images)))
        logits, deltas = self.rpn_head(features)
        rois, valid = getattr(self, PROPOSALS_SCOPE)(logits, deltas)
        cls_logits, box_deltas = self.roi_heads(self.thin_head(features), rois)
        boxes, scores, labels, count = getattr(self, POSTPROCESS_SCOPE)(cls_logits, box_deltas, rois, valid)
        return (boxes if letterbox is None else letterbox.to_frame(boxes)), scores, labels, count


def build_export_model(
    model: LightHeadRCNN, *, method: PSRoIAlignMethod | str = PSRoIAlignMethod.GRID_SAMPLE, engine: str = "onnxruntime",
    frame_size: tuple[int, int] | None = None,
) -> EndToEndDetector:
    """The export graph of ``model`` (left untouched), in eval mode.

    ``engine``: the graph's form is tuned for it (both compute the same detections). "onnxruntime": normalisation
    folded into the first conv (:class:`FoldedPreprocess`), RoI sample grid built by Expand + Concat; "openvino":
    literal normalisation of the BGR image with the channel swap in the first conv (:func:`fold_channel_swap`),
    grid built by broadcasting. Each is what that engine ran fastest.

    ``frame_size`` (h, w): a frame-in graph (:class:`FrameLetterbox`): camera frames of that size in, boxes in frame
    pixels out.

    PS-RoIAlign is swapped on a copy; with adaptive sampling its grid is bounded statically by the input size
    (proposals are clipped to the image), so the pooled shapes stay static too.
    """
    method = PSRoIAlignMethod(method)
    if engine not in ("onnxruntime", "openvino"):
        raise ValueError(f"engine must be 'onnxruntime' or 'openvino', got {engine!r}")
    fold_stem = engine == "onnxruntime"
    c = model.config
    max_grid = max_adaptive_grid(c.input_size, c.pool_size, 1.0 / c.stride) if c.sampling_ratio <= 0 else None
    # one image, proposals clipped to it: the pooler may use its uniform-weight fast path
    factory = partial(PSRoIAlignExport.from_module, method=method, max_grid=max_grid, rois_inside_single_image=True)
    swapped = swap_modules(model, {PSRoIAlign: factory})
    swapped.eval()
    pooler = swapped.roi_heads.pooler
    pooler.geometry = dataclasses.replace(pooler.geometry, grid_by_broadcast=not fold_stem)
    to_bin_major(swapped)
    return EndToEndDetector(swapped, method, fold_stem=fold_stem, frame_size=frame_size).eval()


def to_bin_major(model: LightHeadRCNN) -> bool:
    """Reorder the thin map of ``model`` (a copy with a swapped pooler: modified in place) to (bin, group) channel
    order, so that the pooler regroups it for GridSample with a Reshape instead of a Transpose -> whether it did.

    Both summed branches' last convs (row_a, col_b) get their output channels permuted the same way; the ReLU after
    the sum is per channel. The pooler then returns its bins channels-last ([K, ph, pw, C_out]), so the fc's input
    columns get the same permutation. Exact: the fc sees the same features in a matching order. Only for the
    uniform pooler path.
    """
    pooler, thin = model.roi_heads.pooler, model.thin_head
    if not isinstance(pooler, PSRoIAlignExport) or not pooler.uniform:
        return False
    bins = model.config.pool_size**2
    order = bin_major_order(thin.row_a.out_channels, bins)
    with torch.no_grad():
        for conv in (thin.row_a, thin.col_b):
            conv.weight.copy_(conv.weight[order])
            if conv.bias is not None:
                conv.bias.copy_(conv.bias[order])
        fc = model.roi_heads.head.fc
        fc.weight.copy_(fc.weight[:, order])
    pooler.bin_major = True
    return True


def example_input(model: EndToEndDetector | LightHeadRCNN, seed: int = 0) -> Tensor:
    """A random uint8 [1, H, W, 3] image of the graph's input shape (the model's input size, or the frame size of a
    frame-in graph), to trace the graph with."""
    _, h, w, _ = getattr(model, "input_shape", (1, *model.config.input_size, 3))
    return torch.randint(0, 256, (1, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def matches_float_scope(name: str) -> bool:
    """Whether a node named ``name`` (ONNX or OpenVINO) belongs to a float-only part of the graph."""
    return re.fullmatch(FLOAT_NODE_PATTERN, name) is not None


def float_node_names(model: onnx.ModelProto) -> list[str]:
    """Names of the exported ONNX graph's nodes to keep in float for INT8 (e.g. ORT's ``nodes_to_exclude``).

    For an OpenVINO IR use :func:`lighthead_edge.export.openvino.float_op_names`, which also finds the ops that
    conversion created without a module path.
    """
    return [node.name for node in model.graph.node if matches_float_scope(node.name)]
