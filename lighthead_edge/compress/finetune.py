"""Recovering a pruned model: BatchNorm re-estimation, then fine-tuning with the training loop (optionally distilled
from the unpruned model), saved as a checkpoint marked pruned."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lighthead_edge.config import TrainConfig
from lighthead_edge.modeling.detector import LightHeadRCNN
from lighthead_edge.modeling.pruned import PRUNED_META_KEY


def recalibrate_bn(model: LightHeadRCNN, train_json: str | Path, *, batches: int = 16, batch_size: int = 4) -> int:
    """Re-estimate the backbone's BatchNorm running statistics on up to ``batches`` training batches -> batches used.

    Removing a conv's input channels shifts the statistics its BN normalises by, and fine-tuning keeps BN frozen
    (detection batches are too small to estimate them), so they are re-estimated once here, with no gradient step
    ("adaptive BN", as in EagleEye, Li et al. 2020).
    """
    return recalibrate_bn_on(model, calibration_batches(train_json, model.config.input_size, batch_size)(),
                             batches=batches)  # fmt: skip


def calibration_batches(train_json: str | Path, input_size: tuple[int, int], batch_size: int = 4):
    """A callable giving a fresh, seeded pass over (images, targets) of ``train_json`` with test-time transforms
    (the same images and order every call)."""
    from torch.utils.data import DataLoader

    from lighthead_edge.data.coco import CocoDetection, collate

    dataset = CocoDetection(train_json, input_size=input_size, train=False)

    def batches():
        return DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collate,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip

    return batches


@torch.no_grad()
def recalibrate_bn_on(model: LightHeadRCNN, loader: Iterable, *, batches: int = 16) -> int:
    """``recalibrate_bn`` on (images, targets) batches from ``loader`` -> batches used. A cumulative average
    (momentum None) weighs all batches equally."""
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d) and m.track_running_stats]
    if not bns or batches <= 0:
        return 0
    was_training, momenta = model.training, [bn.momentum for bn in bns]
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    used = 0
    try:
        for images, _ in loader:
            model.backbone(model.normalize(images))
            used += 1
            if used >= batches:
                break
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.train(was_training)
    return used


def finetune_pruned(
    model: LightHeadRCNN,
    classes: list[str],
    *,
    train_json: str | Path,
    val_json: str | Path | None,
    out: str | Path,
    train_config: TrainConfig,
    prune_meta: dict[str, Any],
    teacher: LightHeadRCNN | None = None,
    distill=None,
    command: str | None = None,
    progress_bar: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` in place with ``train()``, keep its best state (by val AP; the last without ``val_json``)
    at ``out`` with ``meta["pruned"] = prune_meta``, and load that state into ``model`` -> the checkpoint's payload
    (``meta`` with the best val metrics, ``train`` with the training record of ``command``).

    ``teacher`` (the unpruned model) turns on distillation, with ``distill`` a ``DistillConfig`` (None: defaults).
    ``train()`` carries the pruned marker into every checkpoint it writes (``init_meta``), so they all reload.
    """
    from lighthead_edge.compress.distill import RoIDistiller
    from lighthead_edge.modeling.checkpoint import read_checkpoint
    from lighthead_edge.train import train

    distiller = RoIDistiller(teacher, model, distill) if teacher is not None else None
    try:
        train(
            train_json=train_json, val_json=val_json, out=out, init_model=model, init_classes=classes,
            init_meta={PRUNED_META_KEY: prune_meta}, train_config=train_config, extra_loss=distiller, command=command,
            progress_bar=progress_bar, log=log,
        )  # fmt: skip
    finally:
        if distiller is not None:
            distiller.close()
    payload = read_checkpoint(out)
    model.load_state_dict(payload.pop("state_dict"))
    model.eval()
    return payload
