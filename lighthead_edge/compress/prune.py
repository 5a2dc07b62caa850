"""PS-aware channel pruning of a Light-Head R-CNN: ``prune_model(model, ratio=0.5) -> (pruned copy, report)``.

Each part is pruned by what it is:

- **Backbone** (Torch-Pruning DepGraph, ``tp.pruner.BasePruner``): every coupled channel group of the backbone
  (residual groups included) loses ``ratio`` of its channels (kept count rounded up to ``round_to``), ranked by L1/L2
  filter norm or BN scale. The backbone's output width is pruned too; the RPN conv and the thin head's first convs
  are never pruned as roots, but lose the matching input channels because the dependency graph follows the
  backbone's output into them. ``hires_ratio`` gives the groups at stride <= 4 their own ratio: at a 512x512 input
  MobileNetV2's features.0-3 write 256x256 and 128x128 maps: in the shipped pruned model they are 41% of the
  backbone's MACs and took 50-54% of its time under OpenVINO's AVX2 kernels (per-node counters, FP32 and INT8).
- **Thin head C_mid** (by hand): a mid channel of branch A is produced by ``col_a`` and consumed only by ``row_a``
  (branch B: ``row_b`` -> ``col_b``). The branches meet only in the sum at the output, so each branch's mids are ranked
  and removed on their own, at the same ratio. Removing mid channel j is exactly the same as zeroing ``row_a[:, j]``.
- **alpha** (by hand): a PS group g is thin channels [g*p*p, (g+1)*p*p); PS-RoIAlign pools it into output channel g,
  which the fc reads as columns [g*p*p, (g+1)*p*p). A group is removed whole, from ``row_a`` AND ``col_b`` (summed, so
  both lose the same channels) and from the fc's columns; the pooler needs no change (its C_out follows its input) and
  ``config.alpha`` is updated. Removing a group is exactly the same as zeroing its fc columns.
- **RPN mid width** (by hand, optional ``rpn_ratio``): a mid channel j of the RPN is output j of its 3x3 conv and
  input j of its two 1x1 outputs; it is ranked by the same path norm and removed from all three, and
  ``config.rpn_channels`` is updated. On a pruned backbone the RPN's 256-wide 3x3 conv is a fifth of the detector's
  MACs (19% for mobilenet_v2-S at ratio 0.4), and backbone pruning only narrows its input.
- **fc hidden width** (by hand, optional ``fc_ratio``): a hidden unit j of the fc-2048 is row j of ``fc`` and column j
  of ``cls_score`` and ``bbox_pred``; it is ranked by the same path norm and removed from all three, and
  ``config.fc_dim`` is updated. With 300 RoIs the fc is a quarter of the detector's MACs, and it does not shrink with
  alpha alone (its 2048 outputs stay).

With ``calibration`` (training batches; the ``prune`` command's default), the head's cuts are chosen and compensated
by least squares on activations instead (``compress/reconstruct.py``): C_mid by a rank-r factorisation of each branch,
PS groups greedily with the fc refitted to the original's pre-activations, fc units with cls/box refitted. The
backbone is still pruned by Torch-Pruning, and its BN statistics are re-estimated before the head is refitted.

Importance in the thin head (without calibration) is a path norm: (norm of what produces a channel) x (norm of what
consumes it), summed over a PS group's p*p channels. Unlike either factor alone it is invariant to moving a scale
between producer and consumer (branch A has no non-linearity between col_a and row_a, so such a scale is free), and it
ranks a channel low when either side ignores it. BN importance applies to the backbone only (the thin head has no BN;
it uses L1 there).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn

from lighthead_edge.compress.reconstruct import Batches, ReconstructReport, reconstruct_head
from lighthead_edge.compress.surgery import (
    BRANCHES,
    prune_branch_mid,
    prune_fc_hidden,
    prune_rpn_mid,
    remove_ps_groups,
)
from lighthead_edge.errors import ConfigError
from lighthead_edge.modeling.detector import LightHeadRCNN
from lighthead_edge.modeling.summary import StageCost, conv_calls, stage_costs

PRUNED_STAGES = ("backbone", "thin_map")  # the stages the MAC target is about
HIRES_STRIDE = 4  # ``hires_ratio`` applies to backbone groups whose root conv writes at this stride or finer


class Importance(str, Enum):
    """Channel ranking criterion."""

    L1 = "l1"  # filter L1 norm (Li et al. 2017), the Torch-Pruning default
    L2 = "l2"
    BN = "bn"  # |gamma| of the following BatchNorm (network slimming); backbone only


@dataclass(frozen=True)
class PruneReport:
    """What ``prune_model`` did: per-stage costs before/after, and the widths it changed.

    ``widths`` maps backbone_out, mid_a, mid_b and alpha to [before, after]; ``removed_groups`` are the indices of the
    removed PS groups in the original thin map.
    """

    ratio: float
    importance: str
    round_to: int | None
    before: list[StageCost]
    after: list[StageCost]
    widths: dict[str, list[int]]
    removed_groups: list[int]
    thin_ratio: float | None = None  # the thin head's ratio (None: ``ratio``)
    fc_ratio: float = 0.0
    rpn_ratio: float = 0.0
    reconstruction: dict[str, Any] | None = None  # ReconstructReport as a dict, when the head was refitted
    hires_ratio: float | None = None  # the backbone's stride <= 4 groups' ratio (None: ``ratio``)

    @staticmethod
    def macs_of(rows: list[StageCost], stages: Sequence[str] = PRUNED_STAGES) -> float:
        return sum(r.macs for r in rows if r.stage in stages)

    @property
    def macs_reduction(self) -> float:
        """Fraction of backbone + thin-map MACs removed (0.5 = half)."""
        return 1.0 - self.macs_of(self.after) / self.macs_of(self.before)

    def to_meta(self) -> dict[str, Any]:
        """Plain values for ``meta["pruned"]`` of a checkpoint (``weights_only`` loading can read them)."""
        return {
            "ratio": self.ratio, "thin_ratio": self.thin_ratio, "fc_ratio": self.fc_ratio, "rpn_ratio": self.rpn_ratio,
            "hires_ratio": self.hires_ratio,
            "importance": self.importance, "round_to": self.round_to,
            "widths": {k: list(v) for k, v in self.widths.items()}, "removed_groups": list(self.removed_groups),
            "macs_reduction": self.macs_reduction, "reconstruction": self.reconstruction,
            "stages_before": [dataclasses.asdict(r) for r in self.before],
            "stages_after": [dataclasses.asdict(r) for r in self.after],
        }  # fmt: skip

    def format(self) -> str:
        """The per-stage table before -> after, then the changed widths."""
        lines = [f"{'stage':<10} {'params before':>14} {'after':>12} {'GMACs before':>13} {'after':>8} {'kept':>6}"]
        pairs = [(b, a) for b in self.before for a in self.after if a.stage == b.stage]
        for b, a in pairs:
            lines.append(f"{b.stage:<10} {b.params:>14,} {a.params:>12,} {b.macs / 1e9:>13.3f} {a.macs / 1e9:>8.3f} "
                         f"{a.macs / max(b.macs, 1.0):>6.1%}")  # fmt: skip
        total_b, total_a = sum(b.macs for b, _ in pairs), sum(a.macs for _, a in pairs)
        params_b, params_a = sum(b.params for b, _ in pairs), sum(a.params for _, a in pairs)
        lines.append(f"{'total':<10} {params_b:>14,} {params_a:>12,} {total_b / 1e9:>13.3f} {total_a / 1e9:>8.3f} "
                     f"{total_a / max(total_b, 1.0):>6.1%}")  # fmt: skip
        widths = ", ".join(f"{k} {v[0]}->{v[1]}" for k, v in self.widths.items())
        ratios = f"ratio {self.ratio}" + (f", thin head {self.thin_ratio}" if self.thin_ratio is not None else "")
        ratios += f", fc {self.fc_ratio}" if self.fc_ratio else ""
        ratios += f", rpn {self.rpn_ratio}" if self.rpn_ratio else ""
        ratios += f", stride<=4 {self.hires_ratio}" if self.hires_ratio is not None else ""
        lines.append(f"backbone + thin_map MACs -{self.macs_reduction:.1%} at {ratios} ({self.importance}); "
                     f"{widths}; removed PS groups {self.removed_groups}")  # fmt: skip
        return "\n".join(lines)


def prune_model(
    model: LightHeadRCNN,
    *,
    ratio: float,
    backbone: bool = True,
    thin_head: bool = True,
    importance: Importance | str = Importance.L1,
    round_to: int | None = 8,
    fc_ratio: float = 0.0,
    thin_ratio: float | None = None,
    rpn_ratio: float = 0.0,
    hires_ratio: float | None = None,
    calibration: Batches | None = None,
    bn_batches: int = 16,
) -> tuple[LightHeadRCNN, PruneReport]:
    """Prune a copy of ``model`` (left untouched) -> (pruned model in eval mode, report).

    Args:
        ratio: fraction of channels removed from every pruned group: backbone channel groups, each branch's C_mid,
            and alpha (floor(alpha * ratio) PS groups, at least one kept).
        backbone, thin_head: which parts to prune.
        importance: ``Importance`` or its value ("l1", "l2", "bn").
        round_to: kept channel counts are rounded up to a multiple of this (SIMD-friendly widths); not applied to
            alpha, whose unit is already a whole p*p group.
        fc_ratio: fraction of the fc's hidden units removed (0: the fc-2048 keeps its width).
        thin_ratio: the thin head's own ratio (C_mid and alpha), when it should differ from the backbone's ``ratio``
            (None: the same). The thin map is as costly as the backbone but has no ImageNet features to lose.
        rpn_ratio: fraction of the RPN's mid channels (its 3x3 conv's outputs) removed (0: the RPN keeps its width).
        hires_ratio: the ratio of the backbone groups at stride <= 4 (None: ``ratio``); see :func:`prune_backbone`.
        calibration: a callable giving a fresh pass over (images, targets) training batches. With it, the backbone's
            BN statistics are re-estimated on up to ``bn_batches`` of them right after backbone pruning, and the
            head is pruned by least-squares reconstruction against ``model`` (``compress/reconstruct.py``): C_mid by
            a rank-r factorisation, PS groups chosen greedily with the fc refitted, fc units with cls/box refitted.
            Without it, every cut is chosen by the weight norms below and nothing is refitted.
    """
    thin_ratio = ratio if thin_ratio is None else thin_ratio
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"--ratio must be in [0, 1), got {ratio}")
    if not 0.0 <= fc_ratio < 1.0:
        raise ConfigError(f"--fc-ratio must be in [0, 1), got {fc_ratio}")
    if not 0.0 <= thin_ratio < 1.0:
        raise ConfigError(f"--thin-ratio must be in [0, 1), got {thin_ratio}")
    if not 0.0 <= rpn_ratio < 1.0:
        raise ConfigError(f"--rpn-ratio must be in [0, 1), got {rpn_ratio}")
    if hires_ratio is not None and not 0.0 <= hires_ratio < 1.0:
        raise ConfigError(f"--hires-ratio must be in [0, 1), got {hires_ratio}")
    try:
        importance = Importance(importance)
    except ValueError:
        raise ConfigError(f"importance must be one of {[i.value for i in Importance]}, got {importance!r}") from None
    pruned = copy.deepcopy(model).eval()
    before, widths = stage_costs(model), _widths(pruned)
    removed: list[int] = []
    if backbone and (ratio > 0 or hires_ratio):
        prune_backbone(pruned, ratio=ratio, importance=importance, round_to=round_to, hires_ratio=hires_ratio)
    recon = None
    if calibration is not None:
        removed, recon = _prune_head_by_reconstruction(
            model, pruned, calibration, thin_ratio=thin_ratio if thin_head else 0.0, fc_ratio=fc_ratio,
            rpn_ratio=rpn_ratio, round_to=round_to, bn_batches=bn_batches,
        )  # fmt: skip
    elif thin_head and thin_ratio > 0:
        p = 2 if importance is Importance.L2 else 1
        for branch, (first, second) in BRANCHES.items():
            scores = mid_importance(getattr(pruned.thin_head, first), getattr(pruned.thin_head, second), p=p)
            keep = _top(scores, _keep_count(scores.numel(), thin_ratio, round_to))
            prune_branch_mid(pruned.thin_head, branch, keep)
        scores = ps_group_importance(pruned, p=p)
        n_remove = min(int(scores.numel() * thin_ratio), scores.numel() - 1)
        removed = sorted(scores.topk(n_remove, largest=False).indices.tolist())
        remove_ps_groups(pruned, removed)
    if fc_ratio > 0 and calibration is None:
        scores = fc_hidden_importance(pruned, p=2 if importance is Importance.L2 else 1)
        prune_fc_hidden(pruned, _top(scores, _keep_count(scores.numel(), fc_ratio, round_to)))
    if rpn_ratio > 0 and calibration is None:
        scores = rpn_mid_importance(pruned, p=2 if importance is Importance.L2 else 1)
        prune_rpn_mid(pruned, _top(scores, _keep_count(scores.numel(), rpn_ratio, round_to)))
    after = _widths(pruned)
    report = PruneReport(
        ratio, importance.value, round_to, before, stage_costs(pruned),
        {k: [widths[k], after[k]] for k in widths}, removed, thin_ratio, fc_ratio, rpn_ratio,
        dataclasses.asdict(recon) if recon is not None else None, hires_ratio,
    )  # fmt: skip
    return pruned, report


def _prune_head_by_reconstruction(
    model: LightHeadRCNN,
    pruned: LightHeadRCNN,
    calibration: Batches,
    *,
    thin_ratio: float,
    fc_ratio: float,
    rpn_ratio: float,
    round_to: int | None,
    bn_batches: int,
) -> tuple[list[int], ReconstructReport]:
    """BN re-estimation, then the head cuts of ``prune_model`` with least-squares refits against ``model``."""
    from lighthead_edge.compress.finetune import recalibrate_bn_on

    used = recalibrate_bn_on(pruned, calibration(), batches=bn_batches)
    th, pp = pruned.thin_head, pruned.config.pool_size**2
    mid_keep, groups_remove = None, 0
    if thin_ratio > 0:
        mid_keep = {b: _keep_count(getattr(th, first).out_channels, thin_ratio, round_to)
                    for b, (first, _) in BRANCHES.items()}  # fmt: skip
        alpha = th.row_a.out_channels // pp
        groups_remove = min(int(alpha * thin_ratio), alpha - 1)
    fc_dim = pruned.roi_heads.head.fc.out_features
    fc_keep = _keep_count(fc_dim, fc_ratio, round_to) if fc_ratio > 0 else None
    rpn_dim = pruned.rpn.head.conv.out_channels
    rpn_keep = _keep_count(rpn_dim, rpn_ratio, round_to) if rpn_ratio > 0 else None
    was_training = model.training
    try:
        removed, report = reconstruct_head(pruned, model, calibration, mid_keep=mid_keep, groups_remove=groups_remove,
                                           fc_keep=fc_keep, rpn_keep=rpn_keep)  # fmt: skip
        return removed, dataclasses.replace(report, bn_batches=used)
    finally:
        model.train(was_training)


def _widths(model: LightHeadRCNN) -> dict[str, int]:
    th, pp = model.thin_head, model.config.pool_size**2
    return {"backbone_out": th.col_a.in_channels, "mid_a": th.col_a.out_channels, "mid_b": th.row_b.out_channels,
            "alpha": th.row_a.out_channels // pp, "fc_dim": model.roi_heads.head.fc.out_features,
            "rpn_mid": model.rpn.head.conv.out_channels}  # fmt: skip


# ------------------------------------------------------------------------------------------------------- backbone
class _FeatureNet(nn.Module):
    """The convolutional graph DepGraph needs to see: backbone -> (RPN head, thin head), without RoI ops."""

    def __init__(self, model: LightHeadRCNN) -> None:
        super().__init__()
        self.backbone, self.rpn_head, self.thin_head = model.backbone, model.rpn.head, model.thin_head

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        f = self.backbone(x)
        logits, deltas = self.rpn_head(f)
        return logits, deltas, self.thin_head(f)


def _tp_importance(importance: Importance):
    import torch_pruning as tp

    if importance is Importance.BN:
        return tp.importance.BNScaleImportance()
    return tp.importance.MagnitudeImportance(p=2 if importance is Importance.L2 else 1)


def prune_backbone(
    model: LightHeadRCNN, *, ratio: float, importance: Importance, round_to: int | None,
    hires_ratio: float | None = None,
) -> None:  # fmt: skip
    """Prune the backbone of ``model`` in place with Torch-Pruning's DepGraph; see the module docstring.

    ``hires_ratio`` (None: ``ratio``) is the ratio of the channel groups whose root conv writes at stride <= 4
    (:data:`HIRES_STRIDE`) of the input: a channel there costs 4x (stride 4) or 16x (stride 2) the MACs and memory
    traffic of one at stride 8 or 16.

    Note: Torch-Pruning's own ``round_to`` rounds the kept count DOWN, so at a small ratio a narrow group loses a whole
    multiple (MobileNetV2's 16-channel bottleneck becomes 8 at ratio 0.05). Here each group's kept count is rounded UP,
    as in the thin head (``_keep_count``), and passed to Torch-Pruning as that group's own exact ratio.
    """
    import torch_pruning as tp

    heads = [m for part in (model.rpn.head, model.thin_head) for m in part.modules() if isinstance(m, nn.Conv2d)]
    h, w = model.config.input_size
    was_training = model.training
    model.eval()  # tracing runs a forward: BN statistics must not move
    net, example = _FeatureNet(model), torch.zeros(1, 3, h, w)
    graph = tp.DependencyGraph().build_dependency(net, example_inputs=example)
    strides = conv_strides(model.backbone, example) if hires_ratio is not None else {}
    ratios = {}
    for group in graph.get_all_groups(ignored_layers=heads, root_module_types=[nn.Conv2d, nn.Linear]):
        root = group[0].dep.target.module
        n = graph.get_out_channels(root)
        if n:
            r = hires_ratio if strides.get(root, HIRES_STRIDE + 1) <= HIRES_STRIDE else ratio
            # the epsilon keeps int(n * (1 - r)) from landing one below the intended count
            ratios[root] = max((n - _keep_count(n, r, round_to)) / n - 1e-9, 0.0)
    pruner = tp.pruner.BasePruner(
        net, example_inputs=example, importance=_tp_importance(importance),
        pruning_ratio=ratio, pruning_ratio_dict=ratios, ignored_layers=heads, round_to=None,
    )  # fmt: skip
    pruner.step()
    model.backbone.out_channels = model.rpn.head.conv.in_channels
    model.train(was_training)


def conv_strides(backbone: nn.Module, example: Tensor) -> dict[nn.Module, int]:
    """{conv: the stride of its output against ``example``'s height}, from one forward pass."""
    return {conv: round(example.shape[-2] / y.shape[-2]) for conv, _, y in conv_calls(backbone, example)}


# ------------------------------------------------------------------------------------------------------ thin head
def _keep_count(n: int, ratio: float, round_to: int | None) -> int:
    keep = n - int(n * ratio)
    if round_to and n > round_to:
        keep = min(n, math.ceil(keep / round_to) * round_to)
    return max(keep, 1)


def _top(scores: Tensor, k: int) -> Tensor:
    """Indices of the k highest scores, in channel order (so kept channels keep their relative layout)."""
    return scores.topk(k).indices.sort().values


def _channel_norms(weight: Tensor, dim: int, p: int) -> Tensor:
    """Norm of each slice of ``weight`` along ``dim`` (0: output channels, 1: input channels)."""
    return weight.detach().transpose(0, dim).flatten(1).norm(p=p, dim=1)


def mid_importance(first: nn.Conv2d, second: nn.Conv2d, p: int = 1) -> Tensor:
    """Tensor[C_mid]: path norm of each mid channel, ||first.weight[j]|| * ||second.weight[:, j]||."""
    return _channel_norms(first.weight, 0, p) * _channel_norms(second.weight, 1, p)


def ps_group_importance(model: LightHeadRCNN, p: int = 1) -> Tensor:
    """Tensor[alpha]: per PS group, the sum over its p*p channels of (||row_a[c]|| + ||col_b[c]||) * ||fc[:, c]||."""
    th, fc = model.thin_head, model.roi_heads.head.fc
    produced = _channel_norms(th.row_a.weight, 0, p) + _channel_norms(th.col_b.weight, 0, p)
    return (produced * _channel_norms(fc.weight, 1, p)).view(-1, model.config.pool_size**2).sum(dim=1)


# ------------------------------------------------------------------------------------------------------ fc hidden
def fc_hidden_importance(model: LightHeadRCNN, p: int = 1) -> Tensor:
    """Tensor[fc_dim]: ||fc.weight[j]|| * (||cls_score.weight[:, j]|| + ||bbox_pred.weight[:, j]||)."""
    head = model.roi_heads.head
    consumed = _channel_norms(head.cls_score.weight, 1, p) + _channel_norms(head.bbox_pred.weight, 1, p)
    return _channel_norms(head.fc.weight, 0, p) * consumed


# ------------------------------------------------------------------------------------------------------------ RPN
def rpn_mid_importance(model: LightHeadRCNN, p: int = 1) -> Tensor:
    """Tensor[rpn_channels]: ||conv.weight[j]|| * (||cls_logits.weight[:, j]|| + ||bbox_pred.weight[:, j]||)."""
    head = model.rpn.head
    consumed = _channel_norms(head.cls_logits.weight, 1, p) + _channel_norms(head.bbox_pred.weight, 1, p)
    return _channel_norms(head.conv.weight, 0, p) * consumed
