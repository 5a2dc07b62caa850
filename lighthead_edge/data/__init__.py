"""Datasets and transforms: COCO-format detection data, synthetic shape scenes, the NEON tree-crown set.

Names are loaded on first use (PEP 562): importing this package imports neither torch nor OpenCV, and
``lighthead_edge.data.transforms`` and ``.cocojson`` stay usable on torch-free devices. Only ``coco`` needs torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "PAD_BGR": "transforms",
    "hflip": "transforms",
    "letterbox": "transforms",
    "read_image": "transforms",
    "scale_boxes": "transforms",
    "to_model_input": "transforms",
    "CocoDetection": "coco",
    "collate": "coco",
    "load_coco": "cocojson",
    "Scene": "synth",
    "generate_dataset": "synth",
    "render_scene": "synth",
    "prepare_neon": "neon",
}

__all__ = [
    "PAD_BGR",
    "CocoDetection",
    "Scene",
    "collate",
    "generate_dataset",
    "hflip",
    "letterbox",
    "load_coco",
    "prepare_neon",
    "read_image",
    "render_scene",
    "scale_boxes",
    "to_model_input",
]

if TYPE_CHECKING:
    from lighthead_edge.data.coco import CocoDetection, collate
    from lighthead_edge.data.cocojson import load_coco
    from lighthead_edge.data.neon import prepare_neon
    from lighthead_edge.data.synth import Scene, generate_dataset, render_scene
    from lighthead_edge.data.transforms import PAD_BGR, hflip, letterbox, read_image, scale_boxes, to_model_input


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
