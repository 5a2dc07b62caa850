"""Settings, held in frozen dataclasses. Building modules from them happens in one place per package.

The model defaults follow the paper (arXiv 1711.07264) where it is explicit: stride 16, anchors 2..32 x 0.5/1/2,
a k=15 large separable convolution, alpha=10 and p=7 (a 490-channel thin map), PS-RoIAlign with 2x2 samples per bin,
one fc-2048, RPN NMS 0.7 and test NMS 0.5. RoI counts and the input size are edge-sized (the paper's 6000/1000
test RoIs and 800x1333 inputs are for GPUs); they are settings.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lighthead_edge.errors import ConfigError

HEAD_SIZES = {"S": 64, "L": 256}  # C_mid of the large separable convolution


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_float(v: Any) -> bool:  # a finite real number (an int is a fine float)
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_tuple_of(check: Callable[[Any], bool], n: int | None) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, tuple) and (n is None or len(v) == n) and all(check(x) for x in v)


# ModelConfig's field annotations (strings, with ``from __future__ import annotations``) -> a check and its words
_FIELD_CHECKS: dict[str, Callable[[Any], bool]] = {
    "int": _is_int, "float": _is_float, "str": lambda v: isinstance(v, str), "bool": lambda v: isinstance(v, bool),
    "tuple[int, int]": _is_tuple_of(_is_int, 2), "tuple[float, float, float]": _is_tuple_of(_is_float, 3),
    "tuple[float, ...]": _is_tuple_of(_is_float, None),
}  # fmt: skip
_FIELD_TYPES = {
    "int": "an integer", "float": "a finite number", "str": "a string", "bool": "true or false",
    "tuple[int, int]": "2 integers", "tuple[float, float, float]": "3 finite numbers",
    "tuple[float, ...]": "a list of finite numbers",
}  # fmt: skip


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a detector; stored in every checkpoint."""

    num_classes: int = 1  # foreground classes; background is label 0
    backbone: str = "mobilenet_v2"
    input_size: tuple[int, int] = (512, 512)  # (H, W), letterboxed
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)  # RGB, 0..255
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    # RPN
    anchor_scales: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0, 32.0)  # in units of the stride
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_channels: int = 256
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 512
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 300
    rpn_nms_thresh: float = 0.7
    rpn_min_size: float = 1.0
    # thin feature map (large separable convolution)
    head_size: str = "S"
    kernel_size: int = 15
    alpha: int = 10
    pool_size: int = 7
    # R-CNN subnet
    fc_dim: int = 2048
    sampling_ratio: int = 2
    class_agnostic_reg: bool = True
    # post-processing
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # lists (from JSON) become tuples; every value gets its field's type
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, value := tuple(value))
            if not _FIELD_CHECKS[f.type](value):
                raise ConfigError(f"{f.name} must be {_FIELD_TYPES[f.type]}, got {value!r}")
        self._check_ranges()

    def _check_ranges(self) -> None:
        if self.num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {self.num_classes}")
        if not self.backbone:
            raise ConfigError("backbone must be named, got ''")
        if self.head_size not in HEAD_SIZES:
            raise ConfigError(f"head_size must be one of {sorted(HEAD_SIZES)}, got {self.head_size!r}")
        h, w = self.input_size
        if h % 16 or w % 16 or h < 64 or w < 64:
            raise ConfigError(f"input_size must be multiples of 16 and at least 64, got {self.input_size}")
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd, got {self.kernel_size}")
        positive = ("pixel_std", "anchor_scales", "anchor_ratios")
        for name in positive:
            if not getattr(self, name) or min(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be positive numbers, got {getattr(self, name)}")
        counts = ("rpn_channels", "rpn_pre_nms_top_n_train", "rpn_post_nms_top_n_train", "rpn_pre_nms_top_n_test",
                  "rpn_post_nms_top_n_test", "kernel_size", "alpha", "pool_size", "fc_dim", "detections_per_img")
        for name in counts:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("rpn_nms_thresh", "score_thresh", "nms_thresh"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.rpn_min_size < 0:
            raise ConfigError(f"rpn_min_size must be >= 0, got {self.rpn_min_size}")

    @property
    def stride(self) -> int:
        return 16

    @property
    def head_mid_channels(self) -> int:
        return HEAD_SIZES[self.head_size]

    @property
    def thin_channels(self) -> int:
        """C_out of the thin feature map: alpha * p * p (490 by default)."""
        return self.alpha * self.pool_size * self.pool_size

    @property
    def num_anchors(self) -> int:
        return len(self.anchor_scales) * len(self.anchor_ratios)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"the model settings must be a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown model settings {unknown}; the checkpoint is from another version")
        return cls(**data)


@dataclass(frozen=True)
class LossSettings:
    """How the training losses match and sample: anchors for the RPN, RoIs for the R-CNN head (the model's
    constructor takes them; they change nothing at inference)."""

    rpn_batch_size: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_fg_iou: float = 0.7
    rpn_bg_iou: float = 0.3
    roi_batch_size: int = 256
    roi_positive_fraction: float = 0.25
    roi_fg_iou: float = 0.5
    roi_bg_iou_hi: float = 0.5
    roi_bg_iou_lo: float = 0.0


LR_DEFAULTS = {"adamw": 1e-3, "sgd": 0.02}


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the training / fine-tuning loop. ``None`` fields are resolved to what a run actually uses: ``lr``
    here (per optimizer), ``frozen_stages`` and ``freeze_bn`` by ``train()`` (they depend on the starting weights);
    a checkpoint records the resolved config (``to_dict``)."""

    epochs: int = 12
    iters: int | None = None  # when set, overrides epochs
    batch_size: int = 4
    optimizer: str = "adamw"  # "adamw" | "sgd" (AdamW learnt ~3x faster on CPU-sized runs here)
    lr: float | None = None  # None: 1e-3 for adamw, 0.02 for sgd
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 100
    schedule: str = "cosine"  # "cosine" | "step" | "constant"
    hflip: bool = True
    augment: str = "flip"  # "flip" | "aerial" (also vertical flips, quarter turns, colour jitter)
    losses: LossSettings = field(default_factory=LossSettings)
    # bookkeeping
    eval_every: int = 1  # epochs between validation runs
    seed: int = 0
    workers: int = 0
    threads: int | None = None
    max_minutes: float | None = None  # wall-clock budget: stop, validate and save when it is spent
    freeze_bn: bool | None = None  # None: BatchNorm frozen when starting from weights (pretrained or a model)
    frozen_stages: int | None = None  # backbone stages kept frozen; None: 2 with a pretrained backbone, else 0

    def __post_init__(self) -> None:
        if self.optimizer not in LR_DEFAULTS:
            raise ConfigError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "step", "constant"):
            raise ConfigError(f"schedule must be 'cosine', 'step' or 'constant', got {self.schedule!r}")
        if self.lr is None:
            object.__setattr__(self, "lr", LR_DEFAULTS[self.optimizer])
        if self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("batch_size must be >= 1 and lr > 0")

    def to_dict(self) -> dict[str, Any]:
        """Plain values (nested dicts for ``losses``): what a checkpoint records under ``"train"``."""
        return dataclasses.asdict(self)
