"""Export: the torch model to ONNX and OpenVINO artifacts.

Export-only replacements (e.g. :class:`~lighthead_edge.ops.ps_roi_align_export.PSRoIAlignExport` for
:class:`~lighthead_edge.ops.ps_roi_align.PSRoIAlign`) are swapped in by module type on a copy of the model with
:func:`lighthead_edge.export.swap.swap_modules`; the model's own source and the original instance stay untouched.
"""
