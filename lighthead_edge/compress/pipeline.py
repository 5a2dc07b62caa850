"""``lighthead-edge prune``: prune -> re-estimate BN -> (val AP) -> fine-tune, on a model in memory
(``prune_and_finetune``), and ``prune_checkpoint``: load -> that -> save."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lighthead_edge.compress.distill import DistillConfig
from lighthead_edge.compress.prune import PRUNED_STAGES, Importance, PruneReport, prune_model
from lighthead_edge.config import TrainConfig
from lighthead_edge.errors import ConfigError
from lighthead_edge.modeling.detector import LightHeadRCNN
from lighthead_edge.modeling.pruned import PRUNED_META_KEY

Log = Callable[[str], None]


@dataclass(frozen=True)
class PruneSettings:
    """Everything ``prune_and_finetune`` does besides training (that is ``TrainConfig``); recorded in the pruned
    checkpoint's ``meta["pruned"]["settings"]``."""

    ratio: float = 0.5
    importance: Importance = Importance.L1
    round_to: int | None = 8
    backbone: bool = True
    thin_head: bool = True
    fc_ratio: float = 0.0  # fraction of the fc-2048's hidden units removed
    thin_ratio: float | None = None  # the thin head's own ratio (None: ``ratio``)
    rpn_ratio: float = 0.0  # fraction of the RPN's mid channels (its 3x3 conv's outputs) removed
    hires_ratio: float | None = None  # the backbone's stride <= 4 groups' own ratio (None: ``ratio``)
    bn_batches: int = 16  # BN re-estimation batches after pruning (0: keep the old statistics)
    reconstruct: bool = True  # prune the head by least-squares reconstruction (compress/reconstruct.py)
    calib_batches: int = 32  # training batches the reconstruction (and its BN re-estimation) draws from
    distill: bool = False
    distill_config: DistillConfig = field(default_factory=DistillConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (``weights_only`` loading reads them)."""
        return {**dataclasses.asdict(self), "importance": Importance(self.importance).value}


@dataclass
class PruneRun:
    """The result: the pruned ``model`` (its best fine-tuned state, in eval mode), the ``meta`` and ``train`` record
    its checkpoint holds, the prune report, and COCO metrics of the ``original``, the ``pruned`` one before
    fine-tuning and the ``finetuned`` one (only those measured: none without a val set). ``out``: where it was saved
    (None when only in memory)."""

    model: LightHeadRCNN
    classes: list[str]
    meta: dict[str, Any]
    train: dict[str, Any]
    report: PruneReport
    metrics: dict[str, dict[str, float]]
    out: Path | None = None

    def format_ap(self) -> str:
        names = {"original": "original", "pruned": "pruned, before fine-tuning", "finetuned": "pruned + fine-tuned"}
        parts = [f"{names[k]} AP {m['AP']:.3f} AP50 {m['AP50']:.3f}" for k, m in self.metrics.items() if m]
        if "original" in self.metrics and "finetuned" in self.metrics:
            drop = 100 * (self.metrics["original"]["AP"] - self.metrics["finetuned"]["AP"])
            parts.append(f"AP drop {drop:.2f} points")
        return "val: " + "; ".join(parts) if parts else "val: not measured (no --val)"


def _lineage(source_meta: dict, report: PruneReport) -> dict:
    """For a model that was pruned before (iterative pruning): its pruning record under ``previous``, and
    ``cumulative_macs_reduction`` of backbone + thin map against the first, unpruned model. {} otherwise."""
    previous = source_meta.get(PRUNED_META_KEY)
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


def _prune(
    model: LightHeadRCNN, train_json: str | Path, s: PruneSettings, cfg: TrainConfig, source: str | None, log: Log
) -> tuple[LightHeadRCNN, PruneReport, int]:
    """Prune a copy of ``model`` and re-estimate its BN statistics -> (pruned, report, BN batches used)."""
    from lighthead_edge.compress.finetune import calibration_batches, recalibrate_bn

    calibration = None
    if s.reconstruct and s.calib_batches < 1:
        raise ConfigError(f"--calib-batches must be >= 1 for reconstruction, got {s.calib_batches}")
    if s.reconstruct:
        batches = calibration_batches(train_json, model.config.input_size, cfg.batch_size)
        calibration = lambda: itertools.islice(batches(), s.calib_batches)  # noqa: E731 (BN uses up to bn_batches)
        log(f"pruning with least-squares reconstruction on {s.calib_batches} training batches")
    pruned, report = prune_model(model, ratio=s.ratio, backbone=s.backbone, thin_head=s.thin_head,
                                 importance=s.importance, round_to=s.round_to, fc_ratio=s.fc_ratio,
                                 thin_ratio=s.thin_ratio, rpn_ratio=s.rpn_ratio, hires_ratio=s.hires_ratio,
                                 calibration=calibration,
                                 bn_batches=s.bn_batches)  # fmt: skip
    log(f"pruned {source or 'the model'} (widths {report.widths}): "
        f"backbone + thin_map MACs -{report.macs_reduction:.1%}")  # fmt: skip
    if not report.reconstruction:
        return pruned, report, recalibrate_bn(pruned, train_json, batches=s.bn_batches, batch_size=cfg.batch_size)
    r = report.reconstruction
    log(f"reconstruction residuals: C_mid {', '.join(f'{k} {v:.3f}' for k, v in r['mid_error'].items())}; "
        f"fc {r['fc_error']:.3f}; cls/box {r['out_error']:.3f} ({r['rois']} RoIs)"
        + (f"; RPN {r['rpn_error']:.3f}" if s.rpn_ratio else ""))  # fmt: skip
    return pruned, report, r["bn_batches"]  # re-estimated before the head was refitted


@contextlib.contextmanager
def _checkpoint_path(out: str | Path | None) -> Iterator[Path]:
    """``out``, or a path in a temporary folder that is removed afterwards."""
    if out is not None:
        yield Path(out)
        return
    with tempfile.TemporaryDirectory(prefix="lighthead-prune-") as tmp:
        yield Path(tmp) / "pruned.pt"


def prune_and_finetune(
    model: LightHeadRCNN,
    classes: list[str],
    *,
    train_json: str | Path,
    val_json: str | Path | None = None,
    settings: PruneSettings | None = None,
    train_config: TrainConfig | None = None,
    source_meta: dict[str, Any] | None = None,
    source: str | None = None,
    out: str | Path | None = None,
    command: str | None = None,
    progress_bar: bool = True,
    log: Log | None = None,
) -> PruneRun:
    """Prune ``model`` (left untouched), re-estimate BN, fine-tune on ``train_json`` -> the pruned model in memory.

    ``train_config`` with 0 epochs/iterations skips fine-tuning. Fine-tuning goes through ``train()``, which keeps
    its best and resumable checkpoints at ``out`` (a temporary folder when None). With ``val_json`` the original,
    the freshly pruned and the fine-tuned models are all evaluated on it. ``source_meta`` (the meta of ``model``'s
    checkpoint) links a model pruned before to its first record; ``source`` names it; ``command`` is the command line
    to record (None from Python).
    """
    from lighthead_edge.compress.finetune import finetune_pruned
    from lighthead_edge.evaluate import evaluate_model
    from lighthead_edge.train import resolve_config, training_record

    log = log or (lambda msg: print(msg, file=sys.stderr))
    s, cfg = settings or PruneSettings(), train_config or TrainConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    pruned, report, used = _prune(model, train_json, s, cfg, source, log)
    lineage = _lineage(source_meta or {}, report)
    if "previous" in lineage:
        log(f"pruned again: backbone + thin_map MACs -{lineage['cumulative_macs_reduction']:.1%} against the "
            "unpruned model")  # fmt: skip
    metrics: dict[str, dict[str, float]] = {}
    if val_json:
        for name, net in (("original", model), ("pruned", pruned)):
            metrics[name] = evaluate_model(net, val_json, batch_size=cfg.batch_size, progress=progress_bar)
    prune_meta = {**report.to_meta(), **lineage, "source": source, "bn_batches": used, "distill": s.distill,
                  "settings": s.to_dict()}  # fmt: skip
    if _no_training(cfg):
        meta = {"val": metrics.get("pruned", {}), PRUNED_META_KEY: prune_meta}
        record = training_record(resolve_config(cfg, pretrained=False, init_model=True), command)
        return PruneRun(pruned, classes, meta, record, report, metrics, None)
    with _checkpoint_path(out) as path:
        payload = finetune_pruned(
            pruned, classes, train_json=train_json, val_json=val_json, out=path, train_config=cfg,
            prune_meta=prune_meta, teacher=model if s.distill else None, distill=s.distill_config, command=command,
            progress_bar=progress_bar, log=log,
        )  # fmt: skip
    if val_json:
        metrics["finetuned"] = payload["meta"]["val"]
    return PruneRun(pruned, classes, payload["meta"], payload["train"], report, metrics, None)


def prune_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    *,
    train_json: str | Path,
    val_json: str | Path | None = None,
    settings: PruneSettings | None = None,
    train_config: TrainConfig | None = None,
    command: str | None = None,
    progress_bar: bool = True,
    log: Log | None = None,
) -> PruneRun:
    """``prune_and_finetune`` the model of ``checkpoint`` and save the pruned checkpoint to ``out`` (checked first:
    a writable file path that is none of the inputs, nor is its fine-tuning's resumable state)."""
    from lighthead_edge.modeling.checkpoint import check_output, load_checkpoint, save_checkpoint
    from lighthead_edge.train import last_path

    inputs = {"MODEL": checkpoint, "--data": train_json, "--val": val_json}
    check_output(out, inputs)
    check_output(last_path(Path(out)), inputs, "--out's resumable state")
    model, classes, payload = load_checkpoint(checkpoint)
    run = prune_and_finetune(
        model, classes, train_json=train_json, val_json=val_json, settings=settings, train_config=train_config,
        source_meta=payload.get("meta") or {}, source=str(checkpoint), out=out, command=command,
        progress_bar=progress_bar, log=log,
    )  # fmt: skip
    run.out = save_checkpoint(out, run.model, classes, meta=run.meta, train=run.train)
    return run
