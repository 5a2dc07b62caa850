"""Position-sensitive RoIAlign from standard ONNX ops: the export-time replacement of :class:`PSRoIAlign`.

torchvision's ``ps_roi_align`` has no ONNX symbolic, and the reference in :mod:`.ps_roi_align` indexes with
data-dependent Python ints. This module computes the same numbers (to float rounding) from ops that the legacy
exporter (``torch.onnx.export(..., dynamo=False)``, opset 17) turns into default-domain ONNX nodes, which stock
onnxruntime and OpenVINO run on CPU. Two decompositions (``method``), both exact:

- ``grid_sample`` (the default): the map is regrouped to one batch item per bin, ``[N * ph * pw, C_out, H, W]``,
  and one ``GridSample`` (bilinear, zero padding, ``align_corners=False``) reads every sample of every RoI for that
  bin; ``Mul`` + ``ReduceSum`` give the means. It reads all K RoIs on each of the N images and masks the wrong
  ones, so its cost grows with N (on the camera, N = 1).
- ``gather``: floor/clip of the sample coordinates, then one ``GatherElements`` of the 4 bilinear corners of every
  sample from the map viewed ``[C, N * H * W]``, ``Mul`` by the bilinear weights and ``ReduceSum``. It materialises
  every corner (4 values per sample) where GridSample interpolates in place, but its cost does not grow with N.

``scripts/bench_ps_roi_align.py`` times both; on the 2-core test machine ``grid_sample`` was the faster in torch,
onnxruntime and OpenVINO alike.

Both split into parts that a quantizer can tell apart:

- the *coordinate* part (RoIs -> sample indices / grid and weights, float and int64 arithmetic) runs in a submodule
  named :data:`COORDS_SCOPE`;
- the *weighted sum* (``Mul`` of the sampled values by those weights, ``ReduceSum``) runs in one named
  :data:`WEIGHTED_SUM_SCOPE`: quantizing its weight input would be quantizing coordinate arithmetic too;
- what is left is pure data movement on the thin map as it comes in (``Reshape`` / ``Transpose``, which QDQ passes
  through without requantizing) and the one sampling op, ``GatherElements`` or ``GridSample``.

The legacy exporter prefixes node names with the submodule's name (``/roi_heads/pooler/ps_roi_align_coords/Mul``),
and OpenVINO keeps those names, so :data:`FLOAT_NODE_PATTERN` finds the first two parts in both: keep them in float
with ``nncf.IgnoredScope(patterns=[FLOAT_NODE_PATTERN])`` or ORT's ``nodes_to_exclude=float_node_names(model)``.
(ORT's ``op_types_to_quantize=['Conv', 'Gemm', 'MatMul']`` leaves them alone anyway: there is no MatMul here.)
The output is a plain float ``Tensor[K, C_out, ph, pw]``.

Note:
    Adaptive sampling (``sampling_ratio <= 0``) uses ``ceil(roi_size / pooled)`` samples per bin, which differs per
    RoI. Every RoI is sampled on one common ``G_h x G_w`` grid and the extra slots are masked to weight 0, so the
    result stays exact. By default ``G = max(1, max over RoIs of the adaptive grid)`` is computed in the graph
    (an ONNX ``Range`` of a data-dependent length), which is exact for any boxes. ``max_grid`` fixes ``G``
    instead, giving static shapes; that is exact only while no RoI needs more, i.e. for boxes no larger than
    ``max_grid * pooled / spatial_scale`` image pixels. :func:`max_adaptive_grid` gives the bound for boxes clipped
    to the image (the detector clips its proposals). The eager path raises if a RoI breaks the bound; an exported
    graph can't, and would silently under-sample such a RoI.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lighthead_edge.ops.ps_roi_align import PSRoIAlign, as_pair, check_inputs

if TYPE_CHECKING:
    import onnx

# submodule names of the parts to keep in float; the legacy exporter prefixes their nodes' names with them
COORDS_SCOPE = "ps_roi_align_coords"
WEIGHTED_SUM_SCOPE = "ps_roi_align_weighted_sum"
# regex over ONNX / OpenVINO node names (an nncf.IgnoredScope pattern) that matches both parts, nested or not
FLOAT_NODE_PATTERN = rf"(.*/)?({COORDS_SCOPE}|{WEIGHTED_SUM_SCOPE})/.*"


class PSRoIAlignMethod(str, Enum):
    """The decomposition into standard ops; see the module docstring."""

    GATHER = "gather"
    GRID_SAMPLE = "grid_sample"


@dataclass(frozen=True)
class PoolGeometry:
    """What the pooling needs besides its inputs; ``max_grid`` is a static (G_h, G_w) bound on the adaptive grid.

    ``grid_by_broadcast`` only changes the graph's form (see :func:`_grid_sample_coords`), not its values.
    """

    output_size: tuple[int, int]
    spatial_scale: float
    sampling_ratio: int
    max_grid: tuple[int, int] | None = None
    grid_by_broadcast: bool = False

    @classmethod
    def of(
        cls,
        output_size: int | tuple[int, int],
        spatial_scale: float,
        sampling_ratio: int,
        max_grid: int | tuple[int, int] | None = None,
    ) -> PoolGeometry:
        """Normalizes ints to pairs; ``max_grid`` only matters for adaptive sampling, so it is dropped otherwise."""
        bound = None if max_grid is None or sampling_ratio > 0 else as_pair(max_grid)
        return cls(as_pair(output_size), float(spatial_scale), int(sampling_ratio), bound)


class _Axis(NamedTuple):
    """Samples along one axis: coord (Tensor[K, pooled, G]) clamped into [0, size - 1], and weight (same shape):
    1 for a sample that counts, 0 for one more than a pixel outside the map or in a padding slot."""

    coord: Tensor
    weight: Tensor


class _Samples(NamedTuple):
    """Every RoI's sample grid: batch (Tensor[K] int64), y and x axes, count (Tensor[K]) samples per bin."""

    batch: Tensor
    y: _Axis
    x: _Axis
    count: Tensor


def max_adaptive_grid(
    image_size: float | tuple[float, float], output_size: int | tuple[int, int], spatial_scale: float
) -> tuple[int, int]:
    """The largest adaptive grid (G_h, G_w) a box clipped to an image of ``image_size`` (h, w) can need."""
    ih, iw = (image_size, image_size) if isinstance(image_size, (int, float)) else image_size
    ph, pw = as_pair(output_size)
    # ceil(roi / pooled) with the roi size as the graph computes it, in float32 from shifted corners: one slot more
    # when the exact bound is a whole number, in case rounding pushes the roi a hair past it
    return tuple(max(1, math.ceil(size * spatial_scale / p * (1 + 1e-6))) for size, p in ((ih, ph), (iw, pw)))


def _bound(x: Tensor, value: Tensor | float) -> Tensor:
    """``value`` as a tensor of x's dtype: a map size is a Python int in eager mode and a 0-d tensor in a trace."""
    if isinstance(value, Tensor):
        return value.to(x.dtype)
    return x.new_full((), value)  # not torch.tensor(), which the tracer warns about


# ONNX Max / Min rather than Clip (what Tensor.clamp exports to): OpenVINO turns a Clip into Maximum + Minimum and
# gives the node's name, with its COORDS_SCOPE prefix, to only one of them, so an ignored scope would miss the other
def _at_least(x: Tensor, low: Tensor | float) -> Tensor:
    return torch.maximum(x, _bound(x, low))


def _at_most(x: Tensor, high: Tensor | float) -> Tensor:
    return torch.minimum(x, _bound(x, high))


def _grid_size(length: Tensor, pooled: int, sampling_ratio: int) -> Tensor:
    """Samples per bin along one axis for each RoI, Tensor[K] (float, so it stays in the float coordinate part)."""
    if sampling_ratio > 0:
        return torch.full_like(length, float(sampling_ratio))
    return _at_least(torch.ceil(length / pooled), 0.0)


def _grid_steps(grid: Tensor, sampling_ratio: int, max_grid: int | None) -> Tensor:
    """0, 1, ..., G - 1 (Tensor[G]) where G is the grid all RoIs are sampled on."""
    if sampling_ratio > 0:
        return torch.arange(sampling_ratio, dtype=grid.dtype, device=grid.device)
    if max_grid is not None:
        if not torch.jit.is_tracing() and grid.numel() and bool(grid.max() > max_grid):
            raise ValueError(
                f"a RoI needs an adaptive grid of {int(grid.max())} samples per bin but max_grid is {max_grid}; "
                "raise max_grid (see max_adaptive_grid) or leave it None"
            )
        return torch.arange(max_grid, dtype=grid.dtype, device=grid.device)
    # the 1 keeps G >= 1 (as the kernel) and makes the max defined for zero RoIs; a tensor end exports as Range
    end = torch.cat([grid, grid.new_ones(1)]).max()
    return torch.arange(end, dtype=grid.dtype, device=grid.device)


def _axis(start: Tensor, length: Tensor, pooled: int, grid: Tensor, steps: Tensor, size: Tensor | int) -> _Axis:
    """Sample coordinates of one axis, in the reference's order of operations so the rounding matches."""
    bin_size = length / pooled  # [K]
    p = torch.arange(pooled, dtype=start.dtype, device=start.device)
    # a RoI with grid 0 has no valid sample; dividing by 1 keeps its (masked) coordinates finite, not inf/NaN
    offset = (steps[None, :] + 0.5) * (bin_size / _at_least(grid, 1.0))[:, None]  # [K, G]
    coord = start[:, None, None] + p[None, :, None] * bin_size[:, None, None] + offset[:, None, :]  # [K, pooled, G]
    # the kernel: [-1, 0) is clamped onto the border, further out contributes 0; [size - 1, size] reads the last
    # pixel. Clamping into [0, size - 1] gives exactly those reads, for both decompositions.
    inside = (coord >= -1.0) & (coord <= size)
    valid = steps[None, :] < grid[:, None]  # [K, G]: padding slots of the common grid
    weight = (inside & valid[:, None, :]).to(start.dtype)
    return _Axis(_at_most(_at_least(coord, 0.0), size - 1), weight)


def _samples(rois: Tensor, height: Tensor | int, width: Tensor | int, geo: PoolGeometry) -> _Samples:
    """rois (Tensor[K, 5]) -> every RoI's samples on a map of height x width."""
    ph, pw = geo.output_size
    x1, y1, x2, y2 = (rois[:, i] * geo.spatial_scale - 0.5 for i in range(1, 5))
    roi_w, roi_h = x2 - x1, y2 - y1
    grid_h = _grid_size(roi_h, ph, geo.sampling_ratio)
    grid_w = _grid_size(roi_w, pw, geo.sampling_ratio)
    max_h, max_w = geo.max_grid if geo.max_grid is not None else (None, None)
    y = _axis(y1, roi_h, ph, grid_h, _grid_steps(grid_h, geo.sampling_ratio, max_h), height)
    x = _axis(x1, roi_w, pw, grid_w, _grid_steps(grid_w, geo.sampling_ratio, max_w), width)
    return _Samples(rois[:, 0].long(), y, x, _at_least(grid_h * grid_w, 1.0))


def _corners(axis: _Axis, size: Tensor | int) -> tuple[Tensor, Tensor]:
    """Both bilinear neighbours of every sample: index (Tensor[K, pooled, 2G] int64) and weight (same shape)."""
    low = axis.coord.floor()
    high = _at_most(low + 1, size - 1)  # at the last pixel both neighbours are it, with weights 1 and 0
    frac = axis.coord - low
    index = torch.cat([low, high], dim=-1).long()
    weight = torch.cat([(1.0 - frac) * axis.weight, frac * axis.weight], dim=-1)
    return index, weight


def _gather_coords(boxes: Tensor, input: Tensor, geo: PoolGeometry) -> tuple[Tensor, Tensor]:
    """Coordinate part of ``gather``: boxes (Tensor[K, 5]) and the map (only its shape) ->

    index (Tensor[C, K * 2G_h * 2G_w] int64): row c = (g, i, j) of the map viewed [C, N * H * W] is read at the
    corners of bin (i, j) of every RoI; and weight (Tensor[ph * pw, K, 2G_h * 2G_w]): bilinear weight x mask /
    samples per bin, shared by the C_out channels of a bin.
    """
    _, c, h, w = input.shape
    ph, pw = geo.output_size
    s = _samples(boxes.to(input.dtype), h, w, geo)
    y_index, y_weight = _corners(s.y, h)  # [K, ph, 2G_h]
    x_index, x_weight = _corners(s.x, w)  # [K, pw, 2G_w]
    # laid out [ph, pw, K, 2G_h, 2G_w] so that the data part's Mul only broadcasts over its leading C_out axis
    rows = ((s.batch[:, None, None] * h + y_index) * w).permute(1, 0, 2)[:, None, :, :, None]
    index = (rows + x_index.permute(1, 0, 2)[None, :, :, None, :]).reshape(1, ph * pw, -1)
    x_weight = x_weight / s.count[:, None, None]
    weight = y_weight.permute(1, 0, 2)[:, None, :, :, None] * x_weight.permute(1, 0, 2)[None, :, :, None, :]
    # GatherElements needs the index at full size: the same row for all C_out channels of a bin
    index = index.expand(c // (ph * pw), -1, -1).reshape(c, -1)
    return index, weight.reshape(ph * pw, weight.shape[2], -1)


def _weighted_sum(values: Tensor, weight: Tensor, dims: tuple[int, ...]) -> Tensor:
    """(values * weight).sum(dims): the only arithmetic on sampled values, kept in its own scope."""
    return (values * weight).sum(dim=dims)


_WeightedSum = Callable[[Tensor, Tensor, tuple[int, ...]], Tensor]


def _gather_pool(input: Tensor, index: Tensor, weight: Tensor, geo: PoolGeometry, weighted_sum: _WeightedSum) -> Tensor:
    """Data part of ``gather``: input (Tensor[N, C, H, W]) -> Tensor[K, C_out, ph, pw].

    The map is only viewed as [C, N * H * W] (for N = 1 the Transpose just moves a size-1 axis), so GatherElements
    reads it where it lies and never copies it per RoI.
    """
    ph, pw = geo.output_size
    c = input.shape[1]
    values = torch.gather(input.transpose(0, 1).reshape(c, -1), 1, index)  # [C, K * S4]
    k = weight.shape[1]
    values = values.reshape(c // (ph * pw), ph * pw, k, -1)  # [C_out, P, K, S4]
    pooled = weighted_sum(values, weight, (-1,))  # [C_out, P, K]
    return pooled.permute(2, 0, 1).reshape(k, -1, ph, pw)


def _grid_sample_coords(boxes: Tensor, input: Tensor, geo: PoolGeometry) -> tuple[Tensor, Tensor]:
    """Coordinate part of ``grid_sample``: boxes (Tensor[K, 5]) and the map (only its shape) ->

    grid (Tensor[N * ph * pw, K * G_h * G_w, 1, 2]): batch item (n, i, j) holds the samples of bin (i, j) of every
    RoI as normalized (x, y) for ``align_corners=False``; and weight (Tensor[N, ph * pw, 1, K, G_h * G_w]): mask /
    samples per bin, and 0 where RoI k is not on image n.
    """
    n, _, h, w = input.shape
    ph, pw = geo.output_size
    s = _samples(boxes.to(input.dtype), h, w, geo)
    gh, gw = s.y.coord.shape[-1], s.x.coord.shape[-1]
    # pixel c sits at normalized (2c + 1) / size - 1; coordinates are already clamped into the map, so GridSample's
    # zero padding is never mixed in (except with a float-rounding weight of ~1e-7 right at the border)
    # built directly in [ph, pw, K, G_h, G_w, 2] order: only the small per-axis tensors are permuted. The (x, y)
    # pairs come from Expand + Concat, or with geo.grid_by_broadcast from x * (1, 0) + y * (0, 1) (exact): OpenVINO
    # ran the Concat on a last axis of 1 with reference kernels (0.4 of 4.5 ms, pruned INT8 model, 2 threads), while
    # onnxruntime runs the broadcast over a last axis of 2 slowly (0.43 against 0.17 ms for the grid alone)
    k = s.y.coord.shape[0]
    gy = ((2.0 * s.y.coord + 1.0) / h - 1.0).permute(1, 0, 2)[:, None, :, :, None]  # [ph, 1, K, G_h, 1]
    gx = ((2.0 * s.x.coord + 1.0) / w - 1.0).permute(1, 0, 2)[None, :, :, None, :]  # [1, pw, K, 1, G_w]
    if geo.grid_by_broadcast:
        unit = torch.eye(2, dtype=gx.dtype, device=gx.device)
        grid = gx[..., None] * unit[0] + gy[..., None] * unit[1]  # [ph, pw, K, G_h, G_w, 2]
    else:
        grid = torch.stack([gx.expand(ph, pw, k, gh, gw), gy.expand(ph, pw, k, gh, gw)], dim=-1)
    grid = grid.reshape(1, ph * pw, -1, 1, 2).expand(n, -1, -1, -1, -1).reshape(-1, k * gh * gw, 1, 2)
    weight = s.y.weight[:, :, None, :, None] * s.x.weight[:, None, :, None, :] / s.count.reshape(-1, 1, 1, 1, 1)
    weight = weight.permute(1, 2, 0, 3, 4).reshape(1, ph * pw, 1, weight.shape[0], -1)  # [1, P, 1, K, S]
    # GridSample reads every RoI on every image; the one-hot keeps only RoI k's own image
    images = torch.arange(n, device=input.device)
    on_image = (s.batch[None, :] == images[:, None]).to(weight.dtype)  # [N, K]
    return grid, weight * on_image[:, None, None, :, None]


def _grid_sample_pool(
    input: Tensor, grid: Tensor, weight: Tensor, geo: PoolGeometry, weighted_sum: _WeightedSum
) -> Tensor:
    """Data part of ``grid_sample``: input (Tensor[N, C, H, W]) -> Tensor[K, C_out, ph, pw].

    The map is regrouped to [N * ph * pw, C_out, H, W] (one Transpose of the map, no arithmetic) so that one
    GridSample reads, for bin (i, j), only the C_out channels that bin pools from.
    """
    ph, pw = geo.output_size
    n, c, h, w = input.shape
    maps = input.reshape(n, -1, ph * pw, h, w).transpose(1, 2).reshape(-1, c // (ph * pw), h, w)
    values = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    k = weight.shape[3]
    values = values.reshape(n, ph * pw, c // (ph * pw), k, -1)  # [N, P, C_out, K, S]
    pooled = weighted_sum(values, weight, (0, 4))  # [P, C_out, K]
    return pooled.permute(2, 1, 0).reshape(k, -1, ph, pw)


def _grid_sample_pool_uniform(
    input: Tensor, grid: Tensor, k: int, geo: PoolGeometry, bin_major: bool = False
) -> Tensor:
    """``_grid_sample_pool`` for one image whose RoIs lie inside the map, with a fixed sampling ratio.

    Every sample then has the same weight, 1 / samples per bin (none falls beyond the -1 border, none is padding,
    every RoI is on image 0), so the weighted sum is a plain ReduceMean: it saves a broadcast Mul and a ReduceSum
    over [P, C_out, K, S] values, about half of the op's time in the detector graph.

    ``bin_major``: the map's channels are ordered (bin, group), channel ``b * C_out + g``, instead of the reference
    (group, bin) order; then the regrouping for GridSample is a free Reshape instead of a Transpose of the map, and
    the result is Tensor[K, ph, pw, C_out] (channels last): bringing K to the front is then a plain 2-D transpose of
    [P * C_out, K], which OpenVINO ran with a fast kernel, where the 3-D permutation to [K, C_out, P] took a slow
    reference one in INT8 (0.35 ms of 4.8, pruned model, 2 threads). The consumer reorders its inputs to match.
    """
    ph, pw = geo.output_size
    _, c, h, w = input.shape
    if bin_major:
        maps = input.reshape(ph * pw, c // (ph * pw), h, w)
    else:
        maps = input.reshape(1, -1, ph * pw, h, w).transpose(1, 2).reshape(-1, c // (ph * pw), h, w)
    values = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    pooled = values.reshape(ph * pw, c // (ph * pw), k, -1).mean(dim=3)  # [P, C_out, K]
    if bin_major:
        return pooled.reshape(ph * pw * (c // (ph * pw)), k).t().reshape(k, ph, pw, -1)
    return pooled.permute(2, 1, 0).reshape(k, -1, ph, pw)


_Coordinates = Callable[[Tensor, Tensor, PoolGeometry], tuple[Tensor, Tensor]]
_METHODS: dict[PSRoIAlignMethod, tuple[_Coordinates, Callable[..., Tensor]]] = {
    PSRoIAlignMethod.GATHER: (_gather_coords, _gather_pool),
    PSRoIAlignMethod.GRID_SAMPLE: (_grid_sample_coords, _grid_sample_pool),
}


def _run(
    input: Tensor,
    boxes: Tensor,
    geo: PoolGeometry,
    method: PSRoIAlignMethod,
    coords: _Coordinates,
    weighted_sum: _WeightedSum = _weighted_sum,
) -> Tensor:
    """Shared body of the function and the module, which passes its scoped submodules as coords / weighted_sum."""
    ph, pw = geo.output_size
    if not torch.jit.is_tracing():  # shape checks would be baked into a trace as constants
        check_inputs(input, boxes, ph, pw)
        if boxes.shape[0] == 0:
            return input.new_zeros((0, input.shape[1] // (ph * pw), ph, pw))
    a, b = coords(boxes, input, geo)
    return _METHODS[method][1](input, a, b, geo, weighted_sum)


def ps_roi_align_export(
    input: Tensor,
    boxes: Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    *,
    method: PSRoIAlignMethod | str = PSRoIAlignMethod.GRID_SAMPLE,
    max_grid: int | tuple[int, int] | None = None,
) -> Tensor:
    """:func:`~lighthead_edge.ops.ps_roi_align.ps_roi_align` from standard ONNX ops; same arguments and result.

    Args:
        input (Tensor[N, C, H, W]), boxes (Tensor[K, 5]), output_size, spatial_scale, sampling_ratio: as the
            reference.
        method: the decomposition, ``"gather"`` or ``"grid_sample"``.
        max_grid: (G_h, G_w), a static bound on the adaptive grid; see the module Note. Ignored when
            ``sampling_ratio > 0``.

    Returns:
        Tensor[K, C_out, ph, pw].
    """
    geo = PoolGeometry.of(output_size, spatial_scale, sampling_ratio, max_grid)
    method = PSRoIAlignMethod(method)
    return _run(input, boxes, geo, method, _METHODS[method][0])


class _Scope(nn.Module):
    """Runs ``fn``; exists only so that the exported nodes' names carry the attribute name it is stored under."""

    def __init__(self, fn: Callable[..., object]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: object) -> object:
        return self.fn(*args)


class PSRoIAlignExport(nn.Module):
    """Module form of :func:`ps_roi_align_export`: a drop-in, exportable replacement for :class:`PSRoIAlign`.

    ``forward(input (Tensor[N, C, H, W]), rois (Tensor[K, 5])) -> Tensor[K, C_out, ph, pw]``.
    """

    def __init__(
        self,
        output_size: int | tuple[int, int],
        spatial_scale: float,
        sampling_ratio: int,
        *,
        method: PSRoIAlignMethod | str = PSRoIAlignMethod.GRID_SAMPLE,
        max_grid: int | tuple[int, int] | None = None,
        rois_inside_single_image: bool = False,
    ) -> None:
        super().__init__()
        self.geometry = PoolGeometry.of(output_size, spatial_scale, sampling_ratio, max_grid)
        self.method = PSRoIAlignMethod(method)
        # a promise of the caller (the detector graph: one image, proposals clipped to it) that allows the uniform
        # mean; it is only used where it is exact: grid_sample with a fixed sampling ratio
        self.uniform = rois_inside_single_image and self.method is PSRoIAlignMethod.GRID_SAMPLE and sampling_ratio > 0
        # set by :func:`~lighthead_edge.export.graph.to_bin_major` after reordering the channels of the map's producer
        # and the fc's input columns; uniform path only; the output is then Tensor[K, ph, pw, C_out]
        self.bin_major = False
        self.add_module(COORDS_SCOPE, _Scope(_METHODS[self.method][0]))
        self.add_module(WEIGHTED_SUM_SCOPE, _Scope(_weighted_sum))

    @classmethod
    def from_module(
        cls,
        ps: PSRoIAlign,
        *,
        method: PSRoIAlignMethod | str = PSRoIAlignMethod.GRID_SAMPLE,
        max_grid: int | tuple[int, int] | None = None,
        rois_inside_single_image: bool = False,
    ) -> PSRoIAlignExport:
        """The replacement of ``ps``, e.g. as the factory of ``swap_modules(model, {PSRoIAlign: ...})``."""
        return cls(ps.output_size, ps.spatial_scale, ps.sampling_ratio, method=method, max_grid=max_grid,
                   rois_inside_single_image=rois_inside_single_image)  # fmt: skip

    def forward(self, input: Tensor, rois: Tensor) -> Tensor:
        coords, weighted_sum = getattr(self, COORDS_SCOPE), getattr(self, WEIGHTED_SUM_SCOPE)
        if self.uniform and rois.shape[0] > 0:
            grid, _ = coords(rois, input, self.geometry)  # the weights are unused, and dropped from the graph
            return _grid_sample_pool_uniform(input, grid, rois.shape[0], self.geometry, self.bin_major)
        if self.bin_major:
            raise ValueError(
                "a bin-major PSRoIAlignExport needs the uniform path (one image, clipped RoIs, fixed grid)"
            )
        return _run(input, rois, self.geometry, self.method, coords, weighted_sum)

    def extra_repr(self) -> str:
        g = self.geometry
        return (
            f"output_size={g.output_size}, spatial_scale={g.spatial_scale}, sampling_ratio={g.sampling_ratio}, "
            f"method={self.method.value}, max_grid={g.max_grid}"
        )


def float_node_names(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes to keep in float (:data:`FLOAT_NODE_PATTERN`), e.g. for ORT's ``nodes_to_exclude``."""
    pattern = re.compile(FLOAT_NODE_PATTERN)
    return [node.name for node in model.graph.node if pattern.fullmatch(node.name)]


def bin_major_order(channels: int, bins: int) -> Tensor:
    """Tensor[channels]: new channel ``b * C_out + g`` is reference channel ``g * bins + b`` (C_out = channels /
    bins), i.e. ``weight[order]`` reorders a producer's outputs from (group, bin) to (bin, group)."""
    return torch.arange(channels).view(channels // bins, bins).t().reshape(-1)
