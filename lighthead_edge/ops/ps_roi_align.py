"""Position-sensitive RoIAlign: the pure-torch reference.

Same signature and semantics as ``torchvision.ops.ps_roi_align`` (torchvision can't be installed beside the pinned
torch here), transcribed off its CPU kernel, with autograd for training through torch's own indexing ops.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def as_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    """An ``output_size`` as (h, w): one int stands for both."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def check_inputs(input: Tensor, boxes: Tensor, ph: int, pw: int) -> None:
    """Raise ``ValueError`` unless ``input`` is Tensor[N, C, H, W] with C a multiple of ph * pw and ``boxes`` is
    Tensor[K, 5]: the contract of :func:`ps_roi_align` and its export-friendly forms."""
    if input.dim() != 4:
        raise ValueError(f"input must be Tensor[N, C, H, W], got shape {tuple(input.shape)}")
    if boxes.dim() != 2 or boxes.shape[1] != 5:
        raise ValueError(f"boxes must be Tensor[K, 5] (batch index, x1, y1, x2, y2), got {tuple(boxes.shape)}")
    if input.shape[1] % (ph * pw):
        raise ValueError(f"input channels ({input.shape[1]}) must be a multiple of output_size h*w ({ph * pw})")


def _axis_samples(start: Tensor, length: Tensor, pooled: int, grid: Tensor, max_grid: int) -> tuple[Tensor, Tensor]:
    """Sample coordinates along one axis.

    Returns coords (Tensor[K, pooled, max_grid]) and valid (Tensor[K, max_grid] bool): RoI k uses grid[k] samples
    per bin; the rest of the max_grid slots are padding.
    """
    bin_size = length / pooled  # [K]
    i = torch.arange(max_grid, dtype=start.dtype, device=start.device)
    p = torch.arange(pooled, dtype=start.dtype, device=start.device)
    # a zero-size RoI has an adaptive grid of 0; its samples are all masked, the clamp only avoids 0/0
    offset = (i[None, :] + 0.5) * (bin_size / grid.clamp(min=1).to(start.dtype))[:, None]  # [K, G]
    coords = start[:, None, None] + p[None, :, None] * bin_size[:, None, None] + offset[:, None, :]
    valid = i[None, :] < grid[:, None].to(start.dtype)
    return coords, valid


def _bilinear_corners(coord: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Low/high integer index and their weights along one axis, with the kernel's border rules.

    A sample more than one pixel outside the map contributes 0 (returned as ``inside`` via the weights).
    """
    inside = (coord >= -1.0) & (coord <= size)
    c = coord.clamp(min=0)
    low = c.floor().clamp(max=size - 1)
    at_edge = low >= size - 1
    c = torch.where(at_edge, low, c)
    high = torch.where(at_edge, low, low + 1)
    frac = c - low
    w_low = (1.0 - frac) * inside
    w_high = frac * inside
    return low.long(), high.long(), w_low, w_high


def ps_roi_align(
    input: Tensor,
    boxes: Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
) -> Tensor:
    """Position-sensitive RoIAlign (R-FCN / Light-Head R-CNN).

    Args:
        input (Tensor[N, C, H, W]): C = C_out * ph * pw, laid out as [c_out][ph][pw] (bin-major within a group).
        boxes (Tensor[K, 5]): (batch index, x1, y1, x2, y2) in input-image coordinates.
        output_size: (ph, pw), or one int for both.
        spatial_scale: feature-map size / image size, 1/16 for stride 16.
        sampling_ratio: samples per bin along each axis; <= 0 means adaptive, ceil(roi_size / output_size).

    Returns:
        Tensor[K, C_out, ph, pw]: bin (i, j) of output channel c is pooled from input channel (c * ph + i) * pw + j.

    Note:
        Box corners are scaled and shifted by -0.5 (pixel centres sit at integer coordinates), and RoI sizes are not
        clamped to 1; both as in torchvision's kernel. A sample in [-1, 0) is clamped onto the border, one further
        out contributes 0; the bin value is the mean over all its samples, including those zeros. Gradients flow to
        ``input`` only, like torchvision's.
    """
    ph, pw = as_pair(output_size)
    check_inputs(input, boxes, ph, pw)
    n, c, h, w = input.shape
    c_out = c // (ph * pw)
    k = boxes.shape[0]
    if k == 0:
        return input.new_zeros((0, c_out, ph, pw))
    rois = boxes.detach().to(input.dtype)
    x1, y1, x2, y2 = (rois[:, i] * spatial_scale - 0.5 for i in range(1, 5))
    roi_w, roi_h = x2 - x1, y2 - y1
    if sampling_ratio > 0:
        grid_h = torch.full((k,), sampling_ratio, device=input.device, dtype=torch.long)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / ph).long().clamp(min=0)
        grid_w = torch.ceil(roi_w / pw).long().clamp(min=0)
    gh = max(int(grid_h.max()), 1)
    gw = max(int(grid_w.max()), 1)
    ys, vy = _axis_samples(y1, roi_h, ph, grid_h, gh)  # [K, ph, gh], [K, gh]
    xs, vx = _axis_samples(x1, roi_w, pw, grid_w, gw)  # [K, pw, gw], [K, gw]
    y_lo, y_hi, wy_lo, wy_hi = _bilinear_corners(ys, h)
    x_lo, x_hi, wx_lo, wx_hi = _bilinear_corners(xs, w)
    wy_lo, wy_hi = wy_lo * vy[:, None, :], wy_hi * vy[:, None, :]
    wx_lo, wx_hi = wx_lo * vx[:, None, :], wx_hi * vx[:, None, :]

    # channel of bin (i, j) in group g is (g * ph + i) * pw + j; index the flat input directly, so memory is
    # O(K * C * samples), never O(K * C * H * W)
    chan = torch.arange(c, device=input.device).view(1, c_out, ph, pw)
    base = ((rois[:, 0].long().view(k, 1, 1, 1) * c + chan) * (h * w))[..., None, None]  # [K, c_out, ph, pw, 1, 1]
    flat_input = input.reshape(-1)

    def corner(yi: Tensor, xi: Tensor) -> Tensor:
        # yi [K, ph, gh], xi [K, pw, gw] -> values [K, c_out, ph, pw, gh, gw]
        offset = yi[:, None, :, None, :, None] * w + xi[:, None, None, :, None, :]
        return flat_input[base + offset]

    def weight(wy: Tensor, wx: Tensor) -> Tensor:
        return (wy[:, :, None, :, None] * wx[:, None, :, None, :])[:, None]  # [K, 1, ph, pw, gh, gw]

    total = (
        corner(y_lo, x_lo) * weight(wy_lo, wx_lo)
        + corner(y_lo, x_hi) * weight(wy_lo, wx_hi)
        + corner(y_hi, x_lo) * weight(wy_hi, wx_lo)
        + corner(y_hi, x_hi) * weight(wy_hi, wx_hi)
    ).sum(dim=(4, 5))
    count = (grid_h * grid_w).clamp(min=1).to(input.dtype)
    return total / count[:, None, None, None]


class PSRoIAlign(nn.Module):
    """Module form of :func:`ps_roi_align`; the export swaps this type for a graph-friendly one."""

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float, sampling_ratio: int) -> None:
        super().__init__()
        self.output_size = as_pair(output_size)
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio

    def forward(self, input: Tensor, rois: Tensor) -> Tensor:
        return ps_roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, sampling_ratio={self.sampling_ratio}"
        )
