"""Data-aware pruning of the light head: cut, then rebuild what follows the cut by least squares on calibration data.

Magnitude pruning throws channels away and leaves fine-tuning to repair the damage. Here each cut of the head is
chosen and compensated from activations on training images (the reconstruction step of He et al. 2017, "Channel
Pruning for Accelerating Very Deep Neural Networks", and ThiNet), so the pruned model starts close to the original:

- **C_mid** of a branch (``col_a -> row_a`` or ``row_b -> col_b``). There is no non-linearity between the two convs,
  so keeping r mids is a rank-r factorisation, and the best one is not a subset of the old mids. With M the mid
  activations (second moment ``E[m m^T]`` = L L^T) and ``G = R^T R`` the Gram matrix of the consumer conv's weights
  over its outputs and taps, the branch output error ``||W2 (I - P) m||`` is approximately ``||R (I - P) L||_F``.
  Its minimum over rank-r projections P is the truncated SVD of ``R L = U S V^T``: ``P = R^-1 U_r U_r^T R``, so the
  producer's weights become ``U_r^T R W1`` and the consumer's ``W2 R^-1 U_r`` (exact but for the dropped singular
  values; the approximation treats the consumer's k taps as independent).
- **alpha** (whole PS groups). The fc-2048 is refitted on the pooled features the pruned thin map gives, to the
  original model's fc pre-activations on the same RoIs: ``W' = E[z f_K^T] E[f_K f_K^T]^-1`` (ridge-regularised, bias
  as a constant input). Groups are removed greedily, each time the one whose removal leaves the smallest residual
  after that refit (a Schur complement, so no retraining per candidate).
- **fc hidden units**. Ranked by ``E[h_j^2] * ||[cls; box][:, j]||^2`` (what a unit actually sends to the outputs), then
  ``cls_score`` and ``bbox_pred`` are refitted on the kept units to the original model's logits and deltas.
- **RPN mid channels** (the 3x3 conv's outputs, after its ReLU). Ranked the same way,
  ``E[t_j^2] * ||[cls; box][:, j]||^2`` over every feature-map position, then the RPN's two 1x1 outputs are refitted
  on the kept channels to the original model's objectness logits and deltas at the same positions (the pruned
  backbone's features in, the original's outputs as targets).

The RoIs are the original model's top test-time proposals plus the ground-truth boxes, as in the distillation
(``compress/distill.py``): the boxes that reach the head at test time. Moments are accumulated in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lighthead_edge.compress.distill import teacher_rois
from lighthead_edge.compress.surgery import BRANCHES, prune_fc_hidden, prune_rpn_mid, remove_ps_groups
from lighthead_edge.errors import ConfigError
from lighthead_edge.modeling.detector import LightHeadRCNN

Batches = Callable[[], Iterable[tuple[Tensor, list[dict[str, Tensor]]]]]  # a fresh pass over (images, targets)


@dataclass(frozen=True)
class ReconstructReport:
    """How much of the original signal each refit lost (0: exact; 1: all of it). ``mid_error`` is a relative norm in
    the approximate metric of the factorisation; ``fc_error`` and ``out_error`` are residual fractions of the
    original outputs' energy."""

    mid_error: dict[str, float]  # branch -> relative output error of the rank-r factorisation
    fc_error: float  # fc pre-activation residual after removing PS groups and refitting
    out_error: float  # cls/box output residual after removing fc hidden units and refitting (0 when not pruned)
    rois: int  # calibration RoIs the fc refits saw
    bn_batches: int = 0  # batches the backbone's BN statistics were re-estimated on first
    rpn_error: float = 0.0  # RPN objectness/delta residual after removing mid channels and refitting (0: not pruned)


def _psd_sqrt(m: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Symmetric square root of a PSD matrix and its inverse, eigenvalues floored at eps * the largest."""
    w, v = torch.linalg.eigh(m)
    w = w.clamp_min(eps * w.max().clamp_min(1e-30))
    return (v * w.sqrt()) @ v.T, (v / w.sqrt()) @ v.T


def lowrank_mid(first: nn.Conv2d, second: nn.Conv2d, moment: Tensor, rank: int) -> tuple[nn.Conv2d, nn.Conv2d, float]:
    """Rank-``rank`` replacement of ``second(first(x))`` (no non-linearity between) -> (first', second', rel. error).

    ``moment`` (Tensor[C_mid, C_mid]) is ``E[m m^T]`` of ``first``'s output over calibration positions.
    """
    w1, w2 = first.weight.detach().double(), second.weight.detach().double()
    w2_rows = w2.permute(0, 2, 3, 1).reshape(-1, w2.shape[1])  # [out * taps, C_mid]
    r, r_inv = _psd_sqrt(w2_rows.T @ w2_rows)
    spread, _ = _psd_sqrt(moment.double())
    u, s, _ = torch.linalg.svd(r @ spread)
    u_r = u[:, :rank]
    produce, consume = u_r.T @ r, r_inv @ u_r  # [rank, C_mid], [C_mid, rank]
    new_first = nn.Conv2d(first.in_channels, rank, first.kernel_size, first.stride, first.padding,
                          bias=first.bias is not None)  # fmt: skip
    new_second = nn.Conv2d(rank, second.out_channels, second.kernel_size, second.stride, second.padding,
                           bias=second.bias is not None)  # fmt: skip
    with torch.no_grad():
        new_first.weight.copy_(torch.einsum("rc,cikl->rikl", produce, w1))
        if first.bias is not None:
            new_first.bias.copy_(produce @ first.bias.detach().double())
        new_second.weight.copy_(torch.einsum("ocyx,cr->oryx", w2, consume))
        if second.bias is not None:
            new_second.bias.copy_(second.bias.detach())
    error = float((s[rank:] ** 2).sum() / (s**2).sum().clamp_min(1e-30)) ** 0.5
    return new_first.to(first.weight.dtype), new_second.to(second.weight.dtype), error


class _Moments:
    """Running float64 sums of ``x^T x`` and ``y^T x`` over row batches."""

    def __init__(self) -> None:
        self.xx: Tensor | None = None
        self.yx: Tensor | None = None
        self.yy = 0.0
        self.n = 0

    def add(self, x: Tensor, y: Tensor | None = None) -> None:
        x = x.detach().double()
        self.xx = x.T @ x if self.xx is None else self.xx + x.T @ x
        if y is not None:
            y = y.detach().double()
            self.yx = y.T @ x if self.yx is None else self.yx + y.T @ x
            self.yy += float((y * y).sum())
        self.n += x.shape[0]


def _with_one(x: Tensor) -> Tensor:
    return F.pad(x.flatten(1), (0, 1), value=1.0)


def _ridge(xx: Tensor, idx: Tensor, lam: float = 1e-4) -> Tensor:
    sub = xx[idx][:, idx]
    return sub + lam * sub.diagonal().mean() * torch.eye(len(idx), dtype=sub.dtype)


def _explained(m: _Moments, idx: Tensor) -> tuple[Tensor, float]:
    """Least-squares weights of y on x[:, idx] and the residual fraction of E||y||^2 they leave."""
    yx = m.yx[:, idx]
    w = torch.linalg.solve(_ridge(m.xx, idx), yx.T).T
    explained = float((w * yx).sum())
    return w, max(m.yy - explained, 0.0) / max(m.yy, 1e-30)


# ------------------------------------------------------------------------------------------------- calibration
@torch.no_grad()
def _mid_moments(model: LightHeadRCNN, batches: Batches) -> dict[str, Tensor]:
    th, sums, count = model.thin_head, {"a": None, "b": None}, [0]

    def hook(branch):
        def keep(_module, _inputs, out: Tensor) -> None:
            m = out.detach().double().permute(0, 2, 3, 1).reshape(-1, out.shape[1])
            sums[branch] = m.T @ m if sums[branch] is None else sums[branch] + m.T @ m
            if branch == "a":
                count[0] += m.shape[0]

        return keep

    handles = [th.col_a.register_forward_hook(hook("a")), th.row_b.register_forward_hook(hook("b"))]
    try:
        for images, _ in batches():
            th(model.backbone(model.normalize(images)))
    finally:
        for h in handles:
            h.remove()
    if not count[0]:
        raise ConfigError("reconstruction saw no calibration images: the calibration batches are empty")
    return {k: v / count[0] for k, v in sums.items()}


@torch.no_grad()
def _head_moments(model: LightHeadRCNN, teacher: LightHeadRCNN, batches: Batches, per_image: int, stage: str):
    """Pooled features (stage "fc") or fc activations (stage "out") of ``model`` against the teacher's fc
    pre-activations or outputs, on the teacher's RoIs."""
    m = _Moments()
    for images, targets in batches():
        t_feat = teacher.backbone(teacher.normalize(images))
        rois = teacher_rois(teacher, t_feat, images, targets, per_image)
        t_pooled = teacher.roi_heads.pooler(teacher.thin_head(t_feat), rois).flatten(1)
        s_pooled = model.roi_heads.pooler(model.thin_head(model.backbone(model.normalize(images))), rois).flatten(1)
        th, sh = teacher.roi_heads.head, model.roi_heads.head
        if stage == "fc":
            m.add(_with_one(s_pooled), th.fc(t_pooled))
        else:
            t_hidden = F.relu(th.fc(t_pooled))
            m.add(_with_one(F.relu(sh.fc(s_pooled))), torch.cat([th.cls_score(t_hidden), th.bbox_pred(t_hidden)], 1))
    return m


@torch.no_grad()
def _rpn_moments(model: LightHeadRCNN, teacher: LightHeadRCNN, batches: Batches) -> _Moments:
    """``model``'s RPN mid activations (after the ReLU, and a constant 1) against the teacher's RPN outputs
    (objectness logits, then deltas), one row per feature-map position."""
    m = _Moments()

    def rows(x: Tensor) -> Tensor:
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])

    for images, _ in batches():
        th = teacher.rpn.head
        t_mid = F.relu(th.conv(teacher.backbone(teacher.normalize(images))))
        s_mid = F.relu(model.rpn.head.conv(model.backbone(model.normalize(images))))
        m.add(_with_one(rows(s_mid)), torch.cat([rows(th.cls_logits(t_mid)), rows(th.bbox_pred(t_mid))], 1))
    return m


def reconstruct_rpn(model: LightHeadRCNN, teacher: LightHeadRCNN, batches: Batches, keep: int) -> float:
    """Keep ``keep`` RPN mid channels of ``model`` in place, its 1x1 outputs refitted to ``teacher``'s -> the residual
    fraction of the teacher's RPN output energy."""
    m = _rpn_moments(model, teacher, batches)
    if not m.n:
        raise ConfigError("reconstruction saw no calibration images: the calibration batches are empty")
    head = model.rpn.head
    outputs = torch.cat([head.cls_logits.weight, head.bbox_pred.weight]).detach().double().flatten(1)
    score = m.xx.diagonal()[:-1] * (outputs**2).sum(0)
    kept = score.topk(min(keep, score.numel())).indices.sort().values
    prune_rpn_mid(model, kept)
    w, error = _explained(m, torch.cat([kept, torch.tensor([m.xx.shape[0] - 1])]))
    n_cls = head.cls_logits.out_channels
    with torch.no_grad():
        for layer, rows in ((head.cls_logits, w[:n_cls]), (head.bbox_pred, w[n_cls:])):
            layer.weight.copy_(rows[:, :-1].reshape(layer.weight.shape))
            layer.bias.copy_(rows[:, -1])
    return error


# ------------------------------------------------------------------------------------------------------- steps
def reconstruct_mids(model: LightHeadRCNN, batches: Batches, keep: dict[str, int]) -> dict[str, float]:
    """Factorise the thin head's branches ("a", "b") to ``keep[branch]`` mids in place -> relative error per branch."""
    moments, errors = _mid_moments(model, batches), {}
    for branch, (first, second) in BRANCHES.items():
        th = model.thin_head
        rank = min(keep[branch], getattr(th, first).out_channels)
        new_first, new_second, errors[branch] = lowrank_mid(getattr(th, first), getattr(th, second),
                                                            moments[branch], rank)  # fmt: skip
        setattr(th, first, new_first)
        setattr(th, second, new_second)
    return errors


def select_ps_groups(moments: _Moments, alpha: int, pp: int, n_remove: int) -> tuple[list[int], Tensor, float]:
    """Greedy backward elimination of PS groups -> (removed groups, refitted [fc_dim, kept*pp + 1], residual)."""
    kept = list(range(alpha))
    bias = torch.tensor([alpha * pp])

    def columns(groups: list[int]) -> Tensor:
        return torch.cat([torch.arange(g * pp, (g + 1) * pp) for g in groups] + [bias])

    removed: list[int] = []
    for _ in range(n_remove):
        trials = {g: _explained(moments, columns([k for k in kept if k != g]))[1] for g in kept}
        worst = min(trials, key=trials.get)
        kept.remove(worst)
        removed.append(worst)
    weights, residual = _explained(moments, columns(kept))
    return sorted(removed), weights, residual


def reconstruct_head(
    model: LightHeadRCNN,
    teacher: LightHeadRCNN,
    batches: Batches,
    *,
    mid_keep: dict[str, int] | None,
    groups_remove: int,
    fc_keep: int | None,
    rpn_keep: int | None = None,
    rois_per_image: int = 64,
) -> tuple[list[int], ReconstructReport]:
    """Prune the light head (and with ``rpn_keep``, the RPN's mid channels) of ``model`` in place with least-squares
    reconstruction against ``teacher`` (the unpruned model) -> (removed PS groups, report). ``mid_keep``/``fc_keep``/
    ``rpn_keep`` None leave that width alone."""
    model.eval()
    teacher.eval()
    mid_errors = reconstruct_mids(model, batches, mid_keep) if mid_keep else {}
    pp = model.config.pool_size**2
    alpha = model.thin_head.row_a.out_channels // pp
    m = _head_moments(model, teacher, batches, rois_per_image, "fc")
    if not m.n:
        raise ConfigError("reconstruction saw no calibration RoIs: the calibration batches are empty")
    removed, weights, fc_error = select_ps_groups(m, alpha, pp, groups_remove)
    if removed:
        remove_ps_groups(model, removed)
    fc = model.roi_heads.head.fc
    with torch.no_grad():
        fc.weight.copy_(weights[:, :-1])
        fc.bias.copy_(weights[:, -1])
    out_error = 0.0
    if fc_keep and fc_keep < fc.out_features:
        m = _head_moments(model, teacher, batches, rois_per_image, "out")
        head = model.roi_heads.head
        outputs = torch.cat([head.cls_score.weight, head.bbox_pred.weight]).detach().double()
        score = m.xx.diagonal()[:-1] * (outputs**2).sum(0)
        keep = score.topk(fc_keep).indices.sort().values
        prune_fc_hidden(model, keep)
        w, out_error = _explained(m, torch.cat([keep, torch.tensor([m.xx.shape[0] - 1])]))
        n_cls = head.cls_score.out_features
        with torch.no_grad():
            head.cls_score.weight.copy_(w[:n_cls, :-1])
            head.cls_score.bias.copy_(w[:n_cls, -1])
            head.bbox_pred.weight.copy_(w[n_cls:, :-1])
            head.bbox_pred.bias.copy_(w[n_cls:, -1])
    rois = m.n
    rpn_error = 0.0
    if rpn_keep and rpn_keep < model.rpn.head.conv.out_channels:
        rpn_error = reconstruct_rpn(model, teacher, batches, rpn_keep)
    return removed, ReconstructReport(mid_errors, fc_error, out_error, rois, rpn_error=rpn_error)
