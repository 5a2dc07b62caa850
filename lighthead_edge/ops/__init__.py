"""Detection ops in pure torch, with torchvision's names and semantics (torchvision can't be installed beside the
pinned torch here)::

    from lighthead_edge.ops import PSRoIAlign, batched_nms, box_iou, ps_roi_align

``ps_roi_align`` / ``PSRoIAlign`` are the reference (function and module, as in ``torchvision.ops``); the
export-friendly replacement that the export swaps in lives in :mod:`lighthead_edge.ops.ps_roi_align_export`.
"""

from lighthead_edge.ops.boxes import BBOX_XFORM_CLIP, BoxCoder, box_area, box_iou, clip_boxes
from lighthead_edge.ops.nms import batched_nms, nms
from lighthead_edge.ops.ps_roi_align import PSRoIAlign, ps_roi_align

__all__ = [
    "BBOX_XFORM_CLIP",
    "BoxCoder",
    "PSRoIAlign",
    "batched_nms",
    "box_area",
    "box_iou",
    "clip_boxes",
    "nms",
    "ps_roi_align",
]
