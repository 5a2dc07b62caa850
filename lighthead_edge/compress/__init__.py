"""Compression of a trained Light-Head R-CNN: PS-aware channel pruning (and its fine-tuning / distillation)."""

from lighthead_edge.compress.distill import DistillConfig, RoIDistiller
from lighthead_edge.compress.finetune import finetune_pruned, recalibrate_bn
from lighthead_edge.compress.pipeline import PruneRun, PruneSettings, prune_checkpoint
from lighthead_edge.compress.prune import Importance, PruneReport, prune_model, remove_ps_groups

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
