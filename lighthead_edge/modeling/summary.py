"""Parameters and MACs per stage (backbone, RPN, thin-map head, R-CNN head) at the model's input size."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lighthead_edge.modeling.detector import LightHeadRCNN


@dataclass(frozen=True)
class StageCost:
    stage: str
    params: int
    macs: float  # multiply-accumulates for one image
    note: str = ""


ConvCall = tuple[torch.nn.Conv2d, torch.Tensor, torch.Tensor]  # (conv, its input, its output)


def conv_calls(module: torch.nn.Module, example: torch.Tensor) -> list[ConvCall]:
    """(conv, its input, its output) of every ``Conv2d`` call of one no-grad forward of ``module`` on ``example``,
    in call order."""
    calls: list[ConvCall] = []
    hooks = [m.register_forward_hook(lambda mod, inputs, out: calls.append((mod, inputs[0], out)))
             for m in module.modules() if isinstance(m, torch.nn.Conv2d)]  # fmt: skip
    try:
        with torch.no_grad():
            module(example)
    finally:
        for hook in hooks:
            hook.remove()
    return calls


def _count(module: torch.nn.Module, *inputs: torch.Tensor) -> tuple[float, int]:
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(module, inputs if len(inputs) > 1 else inputs[0])
    return float(macs), int(params)


@torch.no_grad()
def stage_costs(model: LightHeadRCNN, num_rois: int | None = None) -> list[StageCost]:
    """Cost of each stage for one image; the R-CNN head is counted at ``num_rois`` (default: the test post-NMS
    top-N) because its cost scales with the RoI count, unlike the rest."""
    cfg = model.config
    was_training = model.training
    model.eval()
    try:
        h, w = cfg.input_size
        image = torch.zeros(1, 3, h, w)
        features = model.backbone(image)
        rois = num_rois if num_rois is not None else cfg.rpn_post_nms_top_n_test
        pooled = torch.zeros(1, cfg.alpha, cfg.pool_size, cfg.pool_size)
        rows = []
        for name, module, inp, note in (
            ("backbone", model.backbone, image, f"{cfg.backbone}, out {tuple(features.shape[1:])}"),
            ("rpn", model.rpn.head, features, f"{cfg.num_anchors} anchors/cell"),
            ("thin_map", model.thin_head, features, f"k={cfg.kernel_size}, C_mid={cfg.head_mid_channels}, "
                                                    f"C_out={cfg.thin_channels}"),
            ("rcnn_head", model.roi_heads.head, pooled, f"{rois} RoIs, fc-{cfg.fc_dim}"),
        ):  # fmt: skip
            macs, params = _count(module, inp)
            if name == "rcnn_head":  # counted for one RoI; it runs once per RoI
                macs *= rois
            rows.append(StageCost(name, params, macs, note))
        return rows
    finally:
        model.train(was_training)


def format_costs(rows: list[StageCost]) -> str:
    total_macs = sum(r.macs for r in rows)
    lines = [f"{'stage':<10} {'params':>12} {'GMACs':>8} {'share':>6}  note"]
    for r in rows:
        lines.append(f"{r.stage:<10} {r.params:>12,} {r.macs / 1e9:>8.3f} {r.macs / total_macs:>6.1%}  {r.note}")
    lines.append(f"{'total':<10} {sum(r.params for r in rows):>12,} {total_macs / 1e9:>8.3f}")
    return "\n".join(lines)
