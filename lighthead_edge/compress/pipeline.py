"""``lighthead-edge prune``: load -> prune -> re-estimate BN -> (val AP) -> fine-tune -> save, as one function."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lighthead_edge.compress.distill import DistillConfig
from lighthead_edge.compress.prune import PRUNED_STAGES, Importance, PruneReport, prune_model
from lighthead_edge.config import TrainConfig
from lighthead_edge.errors import ConfigError
from lighthead_edge.modeling.pruned import PRUNED_META_KEY


@dataclass(frozen=True)
class PruneSettings:
    """Everything ``prune_checkpoint`` does besides training (that is ``TrainConfig``)."""

    ratio: float = 0.5
    importance: Importance = Importance.L1
    round_to: int | None = 8
    backbone: bool = True
    thin_head: bool = True
    fc_ratio: float = 0.0  # fraction of the fc-2048's hidden units removed
    thin_ratio: float | None = None  # the thin head's own ratio (None: ``ratio``)
    bn_batches: int = 16  # BN re-estimation batches after pruning (0: keep the old statistics)
    reconstruct: bool = True  # prune the head by least-squares reconstruction (compress/reconstruct.py)
    calib_batches: int = 32  # training batches the reconstruction (and its BN re-estimation) draws from
    distill: bool = False
    distill_config: DistillConfig = field(default_factory=DistillConfig)


@dataclass
class PruneRun:
    """The result: where the model went, the prune report, and COCO metrics of the ``original``, the ``pruned`` one
    before fine-tuning and the ``finetuned`` one (only those measured: none without a val set)."""

    out: Path
    report: PruneReport
    metrics: dict[str, dict[str, float]]

    def format_ap(self) -> str:
        names = {"original": "original", "pruned": "pruned, before fine-tuning", "finetuned": "pruned + fine-tuned"}
        parts = [f"{names[k]} AP {m['AP']:.3f} AP50 {m['AP50']:.3f}" for k, m in self.metrics.items() if m]
        if "original" in self.metrics and "finetuned" in self.metrics:
            drop = 100 * (self.metrics["original"]["AP"] - self.metrics["finetuned"]["AP"])
            parts.append(f"AP drop {drop:.2f} points")
        return "val: " + "; ".join(parts) if parts else "val: not measured (no --val)"


def _lineage(payload: dict, report: PruneReport) -> dict:
    """For a checkpoint that was pruned before (iterative pruning): its pruning record under ``previous``, and
    ``cumulative_macs_reduction`` of backbone + thin map against the first, unpruned model. {} otherwise."""
    previous = (payload.get("meta") or {}).get(PRUNED_META_KEY)
    if not isinstance(previous, dict) or not previous.get("stages_before"):
        return {}
    first = previous
    while isinstance(first.get("previous"), dict):
        first = first["previous"]
    before = sum(r["macs"] for r in first["stages_before"] if r["stage"] in PRUNED_STAGES)
    after = PruneReport.macs_of(report.after)
    return {"previous": previous, "cumulative_macs_reduction": 1.0 - after / before}


def _no_training(cfg: TrainConfig) -> bool:
    return (cfg.iters if cfg.iters is not None else cfg.epochs) <= 0


def prune_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    *,
    train_json: str | Path,
    val_json: str | Path | None = None,
    settings: PruneSettings | None = None,
    train_config: TrainConfig | None = None,
    progress_bar: bool = True,
    log: Callable[[str], None] | None = None,
) -> PruneRun:
    """Prune the model of ``checkpoint``, fine-tune it on ``train_json`` and write the pruned checkpoint to ``out``.

    ``train_config`` with 0 epochs/iterations skips fine-tuning. With ``val_json`` the original, the freshly pruned
    and the fine-tuned models are all evaluated on it.
    """
    from lighthead_edge.compress.finetune import calibration_batches, finetune_pruned, recalibrate_bn
    from lighthead_edge.evaluate import evaluate_model
    from lighthead_edge.modeling.checkpoint import load_checkpoint, save_checkpoint

    log = log or (lambda msg: print(msg, file=sys.stderr))
    s, cfg = settings or PruneSettings(), train_config or TrainConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model, classes, payload = load_checkpoint(checkpoint)
    calibration = None
    if s.reconstruct and s.calib_batches < 1:
        raise ConfigError(f"--calib-batches must be >= 1 for reconstruction, got {s.calib_batches}")
    if s.reconstruct:
        batches = calibration_batches(train_json, model.config.input_size, cfg.batch_size)
        calibration = lambda: itertools.islice(batches(), s.calib_batches)  # noqa: E731 (BN uses up to bn_batches)
        log(f"pruning with least-squares reconstruction on {s.calib_batches} training batches")
    pruned, report = prune_model(model, ratio=s.ratio, backbone=s.backbone, thin_head=s.thin_head,
                                 importance=s.importance, round_to=s.round_to, fc_ratio=s.fc_ratio,
                                 thin_ratio=s.thin_ratio, calibration=calibration,
                                 bn_batches=s.bn_batches)  # fmt: skip
    log(f"pruned {checkpoint} (widths {report.widths}): backbone + thin_map MACs -{report.macs_reduction:.1%}")
    if report.reconstruction:
        r = report.reconstruction
        log(
            f"reconstruction residuals: C_mid {', '.join(f'{k} {v:.3f}' for k, v in r['mid_error'].items())}; "
            f"fc {r['fc_error']:.3f}; cls/box {r['out_error']:.3f} ({r['rois']} RoIs)"
        )
    lineage = _lineage(payload, report)
    if "previous" in lineage:
        total = lineage["cumulative_macs_reduction"]
        log(f"pruned again: backbone + thin_map MACs -{total:.1%} against the unpruned model")
    if report.reconstruction:
        used = report.reconstruction["bn_batches"]  # re-estimated before the head was refitted
    else:
        used = recalibrate_bn(pruned, train_json, batches=s.bn_batches, batch_size=cfg.batch_size)
    metrics: dict[str, dict[str, float]] = {}
    if val_json:
        for name, net in (("original", model), ("pruned", pruned)):
            metrics[name] = evaluate_model(net, val_json, batch_size=cfg.batch_size, progress=progress_bar)
    meta = {**report.to_meta(), **lineage, "source": str(checkpoint), "bn_batches": used, "distill": s.distill}
    if _no_training(cfg):
        save_checkpoint(out, pruned, classes, meta={"val": metrics.get("pruned", {}), PRUNED_META_KEY: meta})
    else:
        best = finetune_pruned(
            pruned, classes, train_json=train_json, val_json=val_json, out=out, train_config=cfg, prune_meta=meta,
            teacher=model if s.distill else None, distill=s.distill_config, progress_bar=progress_bar, log=log,
        )  # fmt: skip
        if val_json:
            metrics["finetuned"] = best
    return PruneRun(Path(out), report, metrics)
