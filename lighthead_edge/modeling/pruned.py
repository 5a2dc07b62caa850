"""Pruned architectures: rebuild a detector whose layer widths differ from what its config builds.

Channel pruning changes widths that ``ModelConfig`` does not describe (backbone channels, the thin head's C_mid), so a
pruned checkpoint stores them only in its state dict. ``conform_to_state_dict`` rebuilds the config's model with
those shapes, which keeps ``torch.load(weights_only=True)`` enough to load it: no pickled modules.

A checkpoint says it is pruned with ``meta["pruned"]`` (a dict of plain values: ratio, widths and per-stage costs
before/after); ``load_checkpoint`` conforms only such checkpoints, so a plain checkpoint of another architecture is
still refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from lighthead_edge.errors import CheckpointError

PRUNED_META_KEY = "pruned"


def is_pruned(payload: Mapping[str, Any]) -> bool:
    """Whether a checkpoint payload declares a pruned architecture."""
    meta = payload.get("meta") or {}
    return isinstance(meta, Mapping) and isinstance(meta.get(PRUNED_META_KEY), Mapping)


def _conv_like(conv: nn.Conv2d, weight_shape: torch.Size, bias: bool) -> nn.Conv2d:
    """A Conv2d with ``conv``'s hyper-parameters and a weight of ``weight_shape`` [out, in / groups, kh, kw].

    A depthwise conv (groups == in == out) stays depthwise at its new width; other grouped convs keep their group
    count, since pruning removes whole groups' worth of channels from them or none.
    """
    out_ch, in_per_group = int(weight_shape[0]), int(weight_shape[1])
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
    groups = out_ch if depthwise else conv.groups
    if out_ch % groups:
        raise CheckpointError(f"stored conv weight {tuple(weight_shape)} does not fit {groups} groups")
    return nn.Conv2d(
        in_per_group * groups, out_ch, conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups, bias,
        conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype,
    )  # fmt: skip


def _replacement(module: nn.Module, prefix: str, state_dict: Mapping[str, Tensor]) -> nn.Module | None:
    """The module to put in place of ``module`` so that it fits the stored tensors, or None if it fits already."""
    weight = state_dict.get(prefix + "weight")
    if isinstance(module, nn.BatchNorm2d):
        mean = state_dict.get(prefix + "running_mean", weight)
        if mean is None or mean.shape[0] == module.num_features:
            return None
        return nn.BatchNorm2d(
            int(mean.shape[0]), module.eps, module.momentum, module.affine, module.track_running_stats,
            device=module.running_mean.device, dtype=module.running_mean.dtype,
        )  # fmt: skip
    if weight is None or weight.shape == module.weight.shape:
        return None
    if isinstance(module, nn.Conv2d):
        return _conv_like(module, weight.shape, module.bias is not None)
    out_features, in_features = (int(v) for v in weight.shape)
    return nn.Linear(in_features, out_features, module.bias is not None, module.weight.device, module.weight.dtype)


def conform_to_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor]) -> list[str]:
    """Replace, in place, every Conv2d / BatchNorm2d / Linear of ``model`` whose stored shapes differ.

    Args:
        model: a freshly built detector (``build_detector(config)``); a ``LightHeadRCNN`` also gets its backbone's
            ``out_channels`` updated to the width the RPN conv now takes.
        state_dict: the stored tensors; only their shapes are read here (load them afterwards).

    Returns:
        The names of the replaced modules. PS-RoIAlign has no weights: its output (alpha' x p x p) follows the thin
        map's width, so nothing else changes. Modules of other types are left alone, so a mismatch there is still
        reported by the caller's strict shape check.
    """
    replaced = []
    for name, module in list(model.named_modules()):
        if not isinstance(module, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            continue
        new = _replacement(module, f"{name}." if name else "", state_dict)
        if new is None:
            continue
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, new)
        replaced.append(name)
    backbone, rpn = getattr(model, "backbone", None), getattr(model, "rpn", None)
    if backbone is not None and rpn is not None and hasattr(backbone, "out_channels"):
        backbone.out_channels = rpn.head.conv.in_channels
    return replaced
