"""Compression of a trained Light-Head R-CNN: PS-aware channel pruning (and its fine-tuning / distillation).

Names are loaded on first use (PEP 562): importing this package imports neither torch nor NNCF; each name's module
is imported when the name is first looked up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DistillConfig": "distill",
    "RoIDistiller": "distill",
    "finetune_pruned": "finetune",
    "recalibrate_bn": "finetune",
    "PruneRun": "pipeline",
    "PruneSettings": "pipeline",
    "prune_checkpoint": "pipeline",
    "Importance": "prune",
    "PruneReport": "prune",
    "prune_model": "prune",
    "remove_ps_groups": "surgery",
}

__all__ = [
    "DistillConfig",
    "Importance",
    "PruneReport",
    "PruneRun",
    "PruneSettings",
    "RoIDistiller",
    "finetune_pruned",
    "prune_checkpoint",
    "prune_model",
    "recalibrate_bn",
    "remove_ps_groups",
]

if TYPE_CHECKING:
    from lighthead_edge.compress.distill import DistillConfig, RoIDistiller
    from lighthead_edge.compress.finetune import finetune_pruned, recalibrate_bn
    from lighthead_edge.compress.pipeline import PruneRun, PruneSettings, prune_checkpoint
    from lighthead_edge.compress.prune import Importance, PruneReport, prune_model
    from lighthead_edge.compress.surgery import remove_ps_groups


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
