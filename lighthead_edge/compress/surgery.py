"""Head surgery: cut channels out of the light head's layers, shared by magnitude pruning (``compress/prune.py``) and
least-squares reconstruction (``compress/reconstruct.py``). Each function edits a model in place and keeps its config
in step (``alpha``, ``fc_dim``, ``rpn_channels``); none decides *what* to cut.

- A mid channel of the thin head's branch "a" is an output of ``col_a`` and an input of ``row_a`` (branch "b":
  ``row_b`` -> ``col_b``).
- A PS group g is thin channels [g*p*p, (g+1)*p*p) of ``row_a`` and ``col_b`` (summed) and the same columns of the fc.
- A hidden unit j of the fc is its row j and column j of ``cls_score`` and ``bbox_pred``.
- A mid channel j of the RPN is output j of its 3x3 ``conv`` and input j of both 1x1 outputs (``cls_logits``,
  ``bbox_pred``); the ReLU between is per channel, so removing j is exactly zeroing those two inputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from lighthead_edge.errors import ConfigError
from lighthead_edge.modeling.detector import LightHeadRCNN
from lighthead_edge.modeling.thin_head import LargeSeparableConv

BRANCHES = {"a": ("col_a", "row_a"), "b": ("row_b", "col_b")}  # branch -> (mid producer, mid consumer)


def _sliced(layer: nn.Conv2d | nn.Linear, out_idx: Tensor | None, in_idx: Tensor | None,
            build: Callable[[Tensor], nn.Module]) -> nn.Module:  # fmt: skip
    """A copy of a groups=1 conv or a linear layer keeping outputs ``out_idx`` and inputs ``in_idx`` (None: all);
    ``build(weight)`` makes the empty layer of the sliced weight's shape."""
    weight = layer.weight.detach()
    weight = weight if out_idx is None else weight[out_idx]
    weight = weight if in_idx is None else weight[:, in_idx]
    new = build(weight)
    with torch.no_grad():
        new.weight.copy_(weight)
        if layer.bias is not None:
            new.bias.copy_(layer.bias if out_idx is None else layer.bias[out_idx])
    return new


def slice_conv(conv: nn.Conv2d, out_idx: Tensor | None = None, in_idx: Tensor | None = None) -> nn.Conv2d:
    """A copy of a groups=1 conv keeping output channels ``out_idx`` and input channels ``in_idx`` (None: all)."""
    return _sliced(conv, out_idx, in_idx, lambda w: nn.Conv2d(
        w.shape[1], w.shape[0], conv.kernel_size, conv.stride, conv.padding, conv.dilation, 1,
        conv.bias is not None, conv.padding_mode, device=w.device, dtype=w.dtype,
    ))  # fmt: skip


def slice_linear(linear: nn.Linear, out_idx: Tensor | None = None, in_idx: Tensor | None = None) -> nn.Linear:
    """A copy of a linear layer keeping outputs ``out_idx`` and inputs ``in_idx`` (None: all)."""
    return _sliced(linear, out_idx, in_idx,
                   lambda w: nn.Linear(w.shape[1], w.shape[0], linear.bias is not None, w.device, w.dtype))  # fmt: skip


def prune_branch_mid(head: LargeSeparableConv, branch: str, keep: Tensor) -> None:
    """Keep mid channels ``keep`` (Tensor[K] long) of branch "a" (col_a -> row_a) or "b" (row_b -> col_b)."""
    first, second = BRANCHES[branch]
    setattr(head, first, slice_conv(getattr(head, first), out_idx=keep))
    setattr(head, second, slice_conv(getattr(head, second), in_idx=keep))


def ps_channels(groups: Sequence[int], pool_size: int) -> Tensor:
    """Tensor[len(groups) * p * p]: the thin-map channels (= fc columns) of PS groups ``groups``, in order."""
    pp = pool_size * pool_size
    return (torch.as_tensor(list(groups), dtype=torch.long)[:, None] * pp + torch.arange(pp)).flatten()


def remove_ps_groups(model: LightHeadRCNN, groups: Sequence[int]) -> None:
    """Remove PS groups ``groups`` of ``model`` in place: thin channels of row_a and col_b, fc input columns, and
    ``config.alpha``. The pooled output becomes Tensor[R, alpha - len(groups), p, p]."""
    th, head, p = model.thin_head, model.roi_heads.head, model.config.pool_size
    alpha = th.row_a.out_channels // (p * p)
    drop = set(groups)
    if not drop <= set(range(alpha)) or len(drop) >= alpha:
        raise ConfigError(f"can't remove PS groups {sorted(drop)} of {alpha}: indices must be in range, one kept")
    keep = ps_channels([g for g in range(alpha) if g not in drop], p)
    th.row_a = slice_conv(th.row_a, out_idx=keep)
    th.col_b = slice_conv(th.col_b, out_idx=keep)
    head.fc = slice_linear(head.fc, in_idx=keep)
    model.config = dataclasses.replace(model.config, alpha=alpha - len(drop))


def prune_fc_hidden(model: LightHeadRCNN, keep: Tensor) -> None:
    """Keep hidden units ``keep`` (Tensor[K] long) of the fc: its rows, and the matching columns of both outputs."""
    head = model.roi_heads.head
    head.fc = slice_linear(head.fc, out_idx=keep)
    head.cls_score = slice_linear(head.cls_score, in_idx=keep)
    head.bbox_pred = slice_linear(head.bbox_pred, in_idx=keep)
    model.config = dataclasses.replace(model.config, fc_dim=int(keep.numel()))


def prune_rpn_mid(model: LightHeadRCNN, keep: Tensor) -> None:
    """Keep mid channels ``keep`` (Tensor[K] long) of the RPN: its 3x3 conv's outputs and both 1x1 outputs' inputs."""
    head = model.rpn.head
    head.conv = slice_conv(head.conv, out_idx=keep)
    head.cls_logits = slice_conv(head.cls_logits, in_idx=keep)
    head.bbox_pred = slice_conv(head.bbox_pred, in_idx=keep)
    model.config = dataclasses.replace(model.config, rpn_channels=int(keep.numel()))
