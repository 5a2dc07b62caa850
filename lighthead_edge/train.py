"""Training and fine-tuning on COCO-format data: SGD/AdamW with warm-up, epochs or iterations, validation mAP per
epoch, the best checkpoint kept, and resume. Pruning reuses it through ``init_model``."""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from lighthead_edge.config import ModelConfig, TrainConfig
from lighthead_edge.data.coco import CocoDetection, collate
from lighthead_edge.errors import CheckpointError, ConfigError, DataError
from lighthead_edge.evaluate import coco_map, format_metrics, predict_dataset
from lighthead_edge.modeling.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from lighthead_edge.modeling.detector import LightHeadRCNN, build_detector, freeze_batchnorm
from lighthead_edge.progress import progress

# checkpoint meta entries that describe the architecture, not the run: they follow a model into fine-tuning
CARRIED_META = ("pruned",)

# a loss term computed on the side (distillation when fine-tuning a pruned model): (model, images, targets) -> loss
ExtraLoss = Callable[[LightHeadRCNN, torch.Tensor, list[dict]], dict[str, torch.Tensor]]


@dataclass
class TrainResult:
    checkpoint: Path
    best_metrics: dict[str, float]
    history: list[dict[str, Any]]
    seconds: float


def last_path(out: Path) -> Path:
    """Where the resumable state of a run writing ``out`` lives."""
    return out.with_name(out.stem + ".last.pt")


def training_record(cfg: TrainConfig, command: str | None) -> dict[str, Any]:
    """What a checkpoint records under ``"train"``: every setting of the run (resolved) and its command line."""
    return {"settings": cfg.to_dict(), "command": command}


def resolve_config(cfg: TrainConfig, *, pretrained: bool, init_model: bool) -> TrainConfig:
    """``cfg`` with the settings that depend on the starting weights filled in: BatchNorm is frozen when starting
    from weights (detection batches are too small for it), and 2 backbone stages with an ImageNet backbone."""
    freeze_bn = (pretrained or init_model) if cfg.freeze_bn is None else cfg.freeze_bn
    frozen_stages = (2 if pretrained else 0) if cfg.frozen_stages is None else cfg.frozen_stages
    return dataclasses.replace(cfg, freeze_bn=freeze_bn, frozen_stages=frozen_stages)


def _build_model(model_config, cfg: TrainConfig, classes, pretrained, init_model) -> LightHeadRCNN:
    if init_model is not None:
        init_model.use_losses(cfg.losses)
        return init_model
    config = ModelConfig.from_dict({**model_config.to_dict(), "num_classes": len(classes)})
    return build_detector(config, pretrained_backbone=pretrained, losses=cfg.losses)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = _param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def make_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_iters: int, time_used: Callable[[], float] | None = None
):
    """Linear warm-up from 1% of the rate, then cosine to 1%, steps at 2/3 and 8/9, or constant.

    With a time budget, ``time_used()`` (0..1) drives the schedule too: progress is whichever of iterations and
    wall-clock time runs out first, so a run cut short by ``max_minutes`` still ends annealed.
    """

    def factor(it: int) -> float:
        if it < cfg.warmup_iters:
            return 0.01 + 0.99 * it / max(cfg.warmup_iters, 1)
        t = (it - cfg.warmup_iters) / max(total_iters - cfg.warmup_iters, 1)
        if time_used is not None:
            t = max(t, time_used())
        t = min(t, 1.0)
        if cfg.schedule == "cosine":
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))
        if cfg.schedule == "step":
            return 0.1 ** sum(t >= f for f in (2 / 3, 8 / 9))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _prepare_model(model: LightHeadRCNN, cfg: TrainConfig) -> None:
    model.train()
    if cfg.freeze_bn:
        freeze_batchnorm(model.backbone)
    features = getattr(model.backbone, "features", None)
    if features is not None and cfg.frozen_stages:
        for p in features[: cfg.frozen_stages].parameters():
            p.requires_grad_(False)


def train(
    *,
    train_json: str | Path,
    val_json: str | Path | None,
    out: str | Path,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    pretrained: str | Path | None = None,
    init_model: LightHeadRCNN | None = None,
    init_classes: list[str] | None = None,
    init_meta: dict[str, Any] | None = None,
    resume: bool = False,
    extra_loss: ExtraLoss | None = None,
    command: str | None = None,
    progress_bar: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a detector (or fine-tune ``init_model``) and keep the best checkpoint (by val AP) at ``out``.

    Without ``val_json`` the last epoch's model is kept. ``resume`` continues from ``<out>.last.pt``.
    ``init_meta`` is the init checkpoint's meta: its architecture marks (``pruned``) carry over, so the fine-tuned
    checkpoints rebuild the same pruned shapes when loaded. Every checkpoint records ``train_config`` as resolved
    (``resolve_config``) and ``command``, the command line that started the run (None from Python).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    cfg = resolve_config(train_config or TrainConfig(), pretrained=pretrained is not None,
                         init_model=init_model is not None)  # fmt: skip
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    base_cfg = init_model.config if init_model is not None else (model_config or ModelConfig())
    train_set, val_set = _datasets(train_json, val_json, base_cfg.input_size, cfg, init_classes)
    train_set.decode_all()  # every image once (NEON's 77 tiles: ~1 s): a bad one fails before a model is written
    if val_set is not None:
        val_set.decode_all()  # read every epoch: a bad image fails now, not after the first epoch's training
    model = _build_model(base_cfg, cfg, train_set.class_names, pretrained, init_model)
    _prepare_model(model, cfg)
    run = _Run(model, train_set, val_set, cfg, Path(out), extra_loss, progress_bar, log)
    run.record = training_record(cfg, command)
    run.carried_meta = {k: v for k, v in (init_meta or {}).items() if k in CARRIED_META}
    if resume:
        run.restore()
    return run.loop()


def _datasets(
    train_json, val_json, input_size, cfg: TrainConfig, init_classes
) -> tuple[CocoDetection, CocoDetection | None]:
    train_set = CocoDetection(train_json, input_size=input_size, train=cfg.hflip, augment=cfg.augment)
    if len(train_set) == 0:
        raise DataError(f"{train_json}: the training set has no images")
    if init_classes is not None and list(init_classes) != train_set.class_names:
        raise DataError(f"{train_json} has classes {train_set.class_names}, the model has {init_classes}")
    val_set = CocoDetection(val_json, input_size=input_size, train=False) if val_json else None
    if val_set is not None and val_set.class_names != train_set.class_names:
        raise DataError(f"{val_json} has classes {val_set.class_names}, but {train_json} has {train_set.class_names}")
    return train_set, val_set


class _Run:
    """One training run: the loop, validation, checkpoints and the time budget."""

    def __init__(self, model, train_set, val_set, cfg: TrainConfig, out: Path, extra_loss, progress_bar, log):
        self.model, self.train_set, self.val_set, self.cfg, self.out = model, train_set, val_set, cfg, out
        self.extra_loss, self.progress_bar, self.log = extra_loss, progress_bar, log
        self.loader = DataLoader(
            train_set, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate,
            drop_last=len(train_set) > cfg.batch_size, num_workers=cfg.workers,
            generator=torch.Generator().manual_seed(cfg.seed),
        )  # fmt: skip
        self.total_iters = cfg.iters or cfg.epochs * len(self.loader)
        self.epochs = math.ceil(self.total_iters / len(self.loader))
        self.budget_s = cfg.max_minutes * 60 if cfg.max_minutes else None
        self.start = time.perf_counter()
        self.optimizer = make_optimizer(model, cfg)
        self.scheduler = make_schedule(
            self.optimizer, cfg, self.total_iters, self._time_used if self.budget_s else None
        )
        self.state = _RunState()
        self.saved = False  # whether ``out`` holds a model of this run
        self.carried_meta: dict[str, Any] = {}
        self.record: dict[str, Any] | None = None  # training_record(), written into every checkpoint

    def _time_used(self) -> float:
        return (time.perf_counter() - self.start) / self.budget_s

    def restore(self) -> None:
        self.state = _restore(last_path(self.out), self.model, self.optimizer, self.scheduler)
        self.saved = self.out.is_file()  # the best of the run's earlier part: replaced only by a better one
        self.log(f"resumed from {last_path(self.out)} at epoch {self.state.epoch}, iteration {self.state.iteration}")

    def loop(self) -> TrainResult:
        m, state = self.model.config, self.state
        length = f"{self.total_iters} iterations ({self.epochs} epochs of {len(self.loader)})"
        if self.budget_s:
            length = f"{length} or {self.cfg.max_minutes:g} min, whichever ends first"
        self.log(f"training {m.backbone}-{m.head_size} on {len(self.train_set)} images, {length}, "
                 f"classes {self.train_set.class_names}")  # fmt: skip
        if state.epoch >= self.epochs or state.iteration >= self.total_iters:
            raise ConfigError(f"nothing to train: {last_path(self.out)} is at iteration {state.iteration} of "
                              f"{self.total_iters}; {self.out} is left as it was (raise --epochs or --iters)")
        self.start = time.perf_counter() - state.seconds
        deadline = self.start + self.budget_s if self.budget_s else float("inf")
        try:
            while state.epoch < self.epochs and state.iteration < self.total_iters:
                _train_epoch(self.model, self.loader, self.optimizer, self.scheduler, state, self.total_iters,
                             self.extra_loss, self.progress_bar, self.cfg.freeze_bn, deadline)  # fmt: skip
                state.epoch += 1
                if time.perf_counter() >= deadline:
                    self.log(f"time budget of {self.cfg.max_minutes} min spent at iteration {state.iteration}; "
                             "stopping")  # fmt: skip
                    self.epochs = state.epoch
                self._end_epoch()
        except DataError as exc:  # an image that became unreadable mid-run: keep the work done, then report
            raise DataError(f"{exc}; {self._save_unfinished()}") from None
        return TrainResult(self.out, state.best_metrics, state.history, time.perf_counter() - self.start)

    def _end_epoch(self) -> None:
        """Validate, keep the best checkpoint, write the resumable state, log one line."""
        state, classes = self.state, self.train_set.class_names
        final = state.epoch >= self.epochs or state.iteration >= self.total_iters
        metrics = _validate(self.model, self.val_set, self.cfg, state.epoch, final, self.progress_bar)
        state.seconds = time.perf_counter() - self.start
        state.history.append({"epoch": state.epoch, "iteration": state.iteration, "loss": state.last_loss,
                              **(metrics or {})})  # fmt: skip
        improved = self.val_set is None or (metrics is not None and metrics["AP"] > state.best_ap)
        improved = improved or (final and not self.saved)  # AP never measurable (-1): the last model is kept
        if improved:
            state.best_ap = metrics["AP"] if metrics else state.best_ap
            state.best_metrics = metrics or {}
            meta = {"val": state.best_metrics, "epoch": state.epoch, "train_data": str(self.train_set.coco_path),
                    "history": state.history}  # fmt: skip
            save_checkpoint(self.out, self.model, classes, meta={**self.carried_meta, **meta}, train=self.record)
            self.saved = True
        train_state = state.to_dict(self.optimizer, self.scheduler)
        save_checkpoint(last_path(self.out), self.model, classes, meta=self.carried_meta, train=self.record,
                        train_state=train_state)  # fmt: skip
        shown = format_metrics(metrics) if metrics else "(not validated)"
        of = str(self.epochs)
        if self.budget_s and 0 < state.epoch < self.epochs and state.seconds > 0:
            by_time = max(state.epoch + 1, round(state.epoch * self.budget_s / state.seconds))
            of = f"~{by_time} by time" if by_time < self.epochs else of  # e.g. prune --finetune-minutes alone
        self.log(f"epoch {state.epoch}/{of}  it {state.iteration}  loss {state.last_loss:.3f}  {shown}"
                 + ("  * best" if improved else ""))  # fmt: skip


    def _save_unfinished(self) -> str:
        """After a failure mid-run: the model as it is goes to ``<out>.last.pt`` (resumable) and, if this run has
        not written ``out`` yet, to ``out`` -> what was saved, for the error message."""
        classes, state = self.train_set.class_names, self.state
        state.seconds = time.perf_counter() - self.start
        last = save_checkpoint(last_path(self.out), self.model, classes, meta=self.carried_meta, train=self.record,
                               train_state=state.to_dict(self.optimizer, self.scheduler))  # fmt: skip
        if not self.saved:
            meta = {"val": {}, "epoch": state.epoch, "train_data": str(self.train_set.coco_path),
                    "history": state.history}  # fmt: skip
            save_checkpoint(self.out, self.model, classes, meta={**self.carried_meta, **meta}, train=self.record)
            return f"the model trained so far ({state.iteration} iterations) was saved to {self.out} and {last}"
        return f"the best model stays in {self.out}; the state at iteration {state.iteration} was saved to {last}"


@dataclass
class _RunState:
    epoch: int = 0
    iteration: int = 0
    best_ap: float = -1.0
    last_loss: float = float("nan")
    seconds: float = 0.0
    best_metrics: dict | None = None
    history: list | None = None

    def __post_init__(self) -> None:
        self.best_metrics = self.best_metrics or {}
        self.history = self.history or []

    def to_dict(self, optimizer, scheduler) -> dict[str, Any]:
        return {
            "epoch": self.epoch, "iteration": self.iteration, "best_ap": self.best_ap, "seconds": self.seconds,
            "best_metrics": self.best_metrics, "history": self.history,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        }  # fmt: skip


def _restore(path: Path, model, optimizer, scheduler) -> _RunState:
    payload = read_checkpoint(path)
    ts = payload.get("train_state")
    if ts is None:
        raise CheckpointError(f"{path} holds no training state to resume from")
    loaded, _, _ = load_checkpoint(path)
    model.load_state_dict(loaded.state_dict())
    optimizer.load_state_dict(ts["optimizer"])
    scheduler.load_state_dict(ts["scheduler"])
    return _RunState(
        ts["epoch"], ts["iteration"], ts["best_ap"], float("nan"), ts["seconds"], ts["best_metrics"], ts["history"]
    )


def _train_epoch(
    model, loader, optimizer, scheduler, state, total_iters, extra_loss, progress_bar, freeze_bn, deadline: float
) -> None:
    model.train()
    if freeze_bn:
        freeze_batchnorm(model.backbone)
    bar = progress(loader, progress_bar, desc=f"epoch {state.epoch + 1}")
    smoothed = None
    for images, targets in bar:
        losses = model(images, targets)
        if extra_loss is not None:
            losses.update(extra_loss(model, images, targets))
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at iteration {state.iteration}; lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        scheduler.step()
        state.iteration += 1
        smoothed = loss.item() if smoothed is None else 0.9 * smoothed + 0.1 * loss.item()
        state.last_loss = smoothed
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{smoothed:.3f}", lr=f"{scheduler.get_last_lr()[0]:.4f}")
        if state.iteration >= total_iters or time.perf_counter() >= deadline:
            break


def _validate(model, val_set, cfg: TrainConfig, epoch: int, final: bool, progress_bar: bool) -> dict | None:
    if val_set is None or (epoch % cfg.eval_every and not final):
        return None
    results = predict_dataset(model, val_set, batch_size=cfg.batch_size, progress=progress_bar, desc="val")
    return coco_map(val_set.coco_path, results, val_set.image_ids)
